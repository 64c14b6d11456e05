// Message rendering: the DOM of the message list, and nothing else. Which
// messages exist and what state they are in is chat.js's business; this
// module turns that into elements.
//
// Text from people (and from the model, while it streams) is inserted with
// textContent. innerHTML is used for exactly one thing: the `html` field the
// server sends for finished replies, which it has already sanitised.

import { $ } from "./util.js";

export const contentOf = (el) => el.querySelector('[data-testid="message-content"]');
export const footerOf = (el) => el.querySelector(".message-footer");

/** A new message element, appended to the list. */
export function messageElement({ role, messageId, clientMsgId, status }) {
  const tpl = $("tpl-message");
  const el = tpl.content.firstElementChild.cloneNode(true);
  el.dataset.role = role;
  el.dataset.status = status;
  if (messageId) el.dataset.messageId = messageId;
  if (clientMsgId) el.dataset.clientMsgId = clientMsgId;
  el.querySelector(".message-author").textContent = role === "user" ? "You said:" : "Confab said:";
  if (role === "assistant") {
    const logo = document.querySelector(".empty-mark .logo");
    if (logo) el.querySelector(".message-avatar").append(logo.cloneNode(true));
  }
  $("message-list").append(el);
  return el;
}

/** Fill in a message from the API (or a replay). For a reply still being
 *  written, returns the stream its live deltas continue. */
export function fillStored(el, m, status) {
  const content = contentOf(el);
  if (m.role === "assistant" && status === "complete" && typeof m.html === "string") {
    content.innerHTML = m.html; // sanitised by the server
  } else {
    content.textContent = m.content || "";
  }
  if (m.role === "assistant" && status === "streaming") {
    const node = document.createTextNode(m.content || "");
    content.replaceChildren(node);
    return { node, chunks: [], base: m.content || "", seeded: true };
  }
  return null;
}

/** Append streamed text to `el` and return its stream (made on the first
 *  delta). Deltas are keyed by `index`, so a replay after a reconnect (which
 *  may repeat some) never doubles text; the common case — the next index in
 *  order — is a cheap append to one text node. */
export function appendDelta(el, stream, index, text) {
  const keepAtBottom = nearBottom();
  if (!stream) {
    stream = { node: document.createTextNode(""), chunks: [], base: "" };
    contentOf(el).replaceChildren(stream.node);
  }
  if (stream.seeded) {
    // Text loaded from the API before the live stream joined. A replay from
    // the start supersedes it; a continuation extends it.
    stream.seeded = false;
    if (index === 0) stream.base = "";
  }
  if (typeof index !== "number") {
    stream.chunks.push(text);
    stream.node.appendData(text);
  } else if (stream.chunks[index] !== undefined) {
    return stream; // already applied
  } else if (index === stream.chunks.length) {
    stream.chunks[index] = text;
    stream.node.appendData(text);
  } else {
    // Out of order (a gap that a replay is filling): rebuild from the parts.
    stream.chunks[index] = text;
    stream.node.data = stream.base + stream.chunks.join("");
  }
  if (keepAtBottom) scrollToBottom();
  return stream;
}

/** A reply restarts (a retry under the same id): back to an empty stream. */
export function restartStream(el) {
  el.dataset.status = "streaming";
  footerOf(el).replaceChildren();
  contentOf(el).replaceChildren();
}

/** A reply is complete; `html` (server-rendered, sanitised Markdown)
 *  replaces the streamed text when given. */
export function finishReply(el, html) {
  const keepAtBottom = nearBottom();
  if (typeof html === "string") contentOf(el).innerHTML = html;
  el.dataset.status = "complete";
  footerOf(el).replaceChildren();
  if (keepAtBottom) scrollToBottom();
}

/** A message the server stored: no more "Sending…". */
export function markSent(el, messageId) {
  el.dataset.status = "complete";
  if (messageId) el.dataset.messageId = messageId;
  footerOf(el).replaceChildren();
}

/** A short status line under a message ("Sending…", "Retrying…"). */
export function setNote(el, text) {
  const note = document.createElement("span");
  note.textContent = text;
  footerOf(el).replaceChildren(note);
}

/** Show why a message failed, with a "Try again" button when `onRetry` may
 *  help. */
export function showFailed(el, { message, retryable, code }, onRetry) {
  el.dataset.status = "failed";
  delete el.dataset.retrying;
  if (code) el.dataset.errorCode = code;
  const footer = footerOf(el);
  const p = document.createElement("p");
  p.className = "message-error";
  p.dataset.testid = "message-error";
  p.textContent = message || "Something went wrong.";
  footer.replaceChildren(p);
  if (retryable) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "btn btn-secondary btn-sm";
    button.dataset.testid = "retry";
    button.textContent = "Try again";
    button.addEventListener("click", () => onRetry(el));
    footer.append(button);
  }
}

/** The elements in the list, in order. */
export const listedMessages = () => [...$("message-list").children];

/** Move elements (already in the list) to its end. */
export function moveToEnd(els) {
  $("message-list").append(...els);
}

export function clearMessages() {
  $("message-list").replaceChildren();
}

/** The "How can I help?" placeholder shows on an empty, loaded chat. */
export function updateEmptyState(loading) {
  const empty = $("empty-state");
  if (empty) empty.hidden = loading || $("message-list").children.length > 0;
}

export function setLoading(on) {
  $("thread-loading").hidden = !on;
}

export function nearBottom() {
  const s = $("message-scroll");
  return s.scrollHeight - s.scrollTop - s.clientHeight < 120;
}

export function scrollToBottom() {
  const s = $("message-scroll");
  s.scrollTop = s.scrollHeight;
}
