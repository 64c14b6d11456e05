// Message rendering: the DOM of the message list, and nothing else. Which
// messages exist and what state they are in is chat.js's business; this
// module turns that into elements.
//
// Text from people (and from the model, while it streams) is inserted with
// textContent. innerHTML is used for exactly one thing: the `html` fields the
// server sends (finished replies, a streaming reply's snapshots, a failed
// reply's partial text), which it has already rendered and sanitised — no
// script from a reply ever runs, and the page never parses Markdown itself.

import { $ } from "./util.js";

export const contentOf = (el) => el.querySelector('[data-testid="message-content"]');
export const footerOf = (el) => el.querySelector(".message-footer");

/** A new message element, appended to the list. */
export function messageElement({ role, messageId, clientMsgId, status, replyTo, replace }) {
  const tpl = $("tpl-message");
  const el = tpl.content.firstElementChild.cloneNode(true);
  el.dataset.role = role;
  el.dataset.status = status;
  if (messageId) el.dataset.messageId = messageId;
  if (clientMsgId) el.dataset.clientMsgId = clientMsgId;
  if (replyTo) el.dataset.replyTo = replyTo;
  el.querySelector(".message-author").textContent = role === "user" ? "You said:" : "Confab said:";
  if (role === "assistant") {
    const logo = document.querySelector(".empty-mark .logo");
    if (logo) el.querySelector(".message-avatar").append(logo.cloneNode(true));
  }
  if (replace) replace.replaceWith(el);
  else $("message-list").append(el);
  return el;
}

/** Server-rendered, sanitised HTML into a reply, with a copy button on
 *  each code block. */
export function setHtml(content, html) {
  content.innerHTML = html; // sanitised by the server
  for (const pre of content.querySelectorAll("pre")) {
    const wrap = document.createElement("div");
    wrap.className = "code-block";
    pre.replaceWith(wrap);
    const button = copyButton("copy-code", "Copy code", () => pre.textContent);
    button.classList.add("code-copy");
    wrap.append(button, pre);
  }
}

/** Put `text` on the clipboard (the Clipboard API, or the older command
 *  where the page is not allowed to use it). */
async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "visually-hidden";
    document.body.append(area);
    area.select();
    const ok = document.execCommand("copy");
    area.remove();
    return ok;
  }
}

function copyButton(testid, label, text) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "btn btn-ghost btn-xs";
  button.dataset.testid = testid;
  button.textContent = label;
  button.addEventListener("click", async () => {
    const ok = await copyText(text());
    button.dataset.copied = ok ? "true" : "false";
    button.textContent = ok ? "Copied" : "Copy failed";
    setTimeout(() => {
      button.textContent = label;
      delete button.dataset.copied;
    }, 1500);
  });
  return button;
}

function actionButton(testid, label, onClick) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "btn btn-ghost btn-xs";
  button.dataset.testid = testid;
  button.textContent = label;
  button.addEventListener("click", () => onClick(button));
  return button;
}

const actionsOf = (el) => {
  let row = el.querySelector(".message-actions");
  if (!row) {
    row = document.createElement("div");
    row.className = "message-actions";
    footerOf(el).before(row);
  }
  return row;
};

/** The controls of a finished reply: Copy (its Markdown source) and
 *  Regenerate. */
export function setReplyActions(el, { source, onRegenerate }) {
  const keepAtBottom = nearBottom();
  const row = actionsOf(el);
  const buttons = [copyButton("copy-reply", "Copy", () => source() || contentOf(el).textContent)];
  if (onRegenerate) buttons.push(actionButton("regenerate", "Regenerate", () => onRegenerate(el)));
  row.replaceChildren(...buttons);
  if (keepAtBottom) scrollToBottom();
}

/** While a reply streams: Stop generating. */
export function setStreamingActions(el, onStop) {
  const keepAtBottom = nearBottom();
  actionsOf(el).replaceChildren(
    actionButton("stop-generating", "Stop generating", (button) => {
      button.disabled = true;
      button.textContent = "Stopping…";
      onStop(el);
    }),
  );
  if (keepAtBottom) scrollToBottom();
}

export function clearActions(el) {
  const row = el.querySelector(".message-actions");
  if (row) row.replaceChildren();
}

/** A badge after a reply's text: "Incomplete" (a failure cut it short) or
 *  "Stopped". */
function setBadge(el, kind) {
  el.querySelector(".reply-badge")?.remove();
  if (!kind) return;
  const badge = document.createElement("span");
  badge.className = `reply-badge reply-badge-${kind}`;
  badge.dataset.testid = kind === "stopped" ? "reply-stopped" : "reply-incomplete";
  badge.textContent = kind === "stopped" ? "Stopped" : "Incomplete";
  contentOf(el).after(badge);
}

/** Fill in a message from the API (or a replay). For a reply still being
 *  written, returns the stream its live deltas continue. */
export function fillStored(el, m, status) {
  const content = contentOf(el);
  if (m.role === "assistant" && status !== "streaming" && typeof m.html === "string") {
    setHtml(content, m.html);
  } else {
    content.textContent = m.content || "";
  }
  if (m.role === "assistant" && status === "stopped") setBadge(el, "stopped");
  if (m.role === "assistant" && status === "streaming") {
    const node = document.createTextNode(m.content || "");
    content.replaceChildren(tail(node));
    return { node, chunks: [], base: m.content || "", seeded: true, snapshot: -1 };
  }
  return null;
}

/** Append streamed text to `el` and return its stream (made on the first
 *  delta). Deltas are keyed by `index`, so a replay after a reconnect (which
 *  may repeat some) never doubles text; the common case — the next index in
 *  order — is a cheap append to one text node.
 *
 *  Now and then a delta carries `html`: the whole reply so far, rendered and
 *  sanitised by the server. It replaces what is shown, and the raw text of
 *  later deltas follows it in a "tail" until the next snapshot, so Markdown
 *  appears while the reply streams. */
export function appendDelta(el, stream, index, text, html) {
  const keepAtBottom = nearBottom();
  if (!stream) {
    stream = { node: document.createTextNode(""), chunks: [], base: "", snapshot: -1 };
    contentOf(el).replaceChildren(tail(stream.node));
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
  } else if (typeof html === "string" && index >= stream.snapshot) {
    stream.chunks[index] = text;
    stream.snapshot = index;
    showSnapshot(el, stream, html);
  } else if (index === stream.chunks.length && index > stream.snapshot) {
    stream.chunks[index] = text;
    stream.node.appendData(text);
  } else {
    // Out of order (a gap that a replay is filling): rebuild from the parts.
    stream.chunks[index] = text;
    if (stream.snapshot >= 0) stream.node.data = stream.chunks.slice(stream.snapshot + 1).join("");
    else stream.node.data = stream.base + stream.chunks.join("");
  }
  if (keepAtBottom) scrollToBottom();
  return stream;
}

function showSnapshot(el, stream, html) {
  const content = contentOf(el);
  setHtml(content, html);
  // The raw tail continues the last paragraph (or list item) when there is
  // one, so text does not jump to a new line between snapshots.
  let host = content;
  for (let last = content.lastElementChild; last; last = last.lastElementChild) {
    if (!["P", "LI", "UL", "OL", "BLOCKQUOTE"].includes(last.tagName)) break;
    host = last;
  }
  stream.node = document.createTextNode(stream.chunks.slice(stream.snapshot + 1).join(""));
  host.append(tail(stream.node));
}

/** Raw streamed text keeps its line breaks; rendered HTML around it does not
 *  need to. */
function tail(node) {
  const span = document.createElement("span");
  span.className = "stream-tail";
  span.append(node);
  return span;
}

/** A reply restarts (a retry under the same id): back to an empty stream. */
export function restartStream(el) {
  el.dataset.status = "streaming";
  footerOf(el).replaceChildren();
  contentOf(el).replaceChildren();
  setBadge(el, null);
}

/** A reply is complete (or stopped by its user); `html` (server-rendered,
 *  sanitised Markdown) replaces the streamed text when given. */
export function finishReply(el, html, status = "complete") {
  const keepAtBottom = nearBottom();
  if (typeof html === "string") setHtml(contentOf(el), html);
  el.dataset.status = status === "stopped" ? "stopped" : "complete";
  delete el.dataset.regenerating;
  setBadge(el, status === "stopped" ? "stopped" : null);
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
export function showFailed(el, { message, retryable, code, html, requestId }, onRetry) {
  const keepAtBottom = nearBottom();
  el.dataset.status = "failed";
  delete el.dataset.retrying;
  delete el.dataset.regenerating;
  if (code) el.dataset.errorCode = code;
  const content = contentOf(el);
  if (typeof html === "string") setHtml(content, html);
  // What arrived before the failure stays, marked as incomplete.
  const partial = el.dataset.role === "assistant" && content.textContent.trim() !== "";
  setBadge(el, partial ? "incomplete" : null);
  if (!partial && el.dataset.role === "assistant") content.replaceChildren();
  clearActions(el);
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
    button.textContent = "Retry";
    button.addEventListener("click", () => onRetry(el));
    footer.append(button);
  }
  if (requestId) {
    const ref = document.createElement("span");
    ref.className = "message-reference";
    ref.dataset.testid = "error-reference";
    ref.title = "Quote this if you report the problem";
    ref.textContent = `Reference ${requestId}`;
    footer.append(ref);
  }
  if (keepAtBottom) scrollToBottom();
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

/** Offer "Load earlier messages" (calling `onClick`), or hide it (null). */
export function setLoadEarlier(onClick, { busy = false } = {}) {
  const row = $("load-earlier-row");
  const button = $("load-earlier");
  if (!row || !button) return;
  row.hidden = !onClick;
  button.disabled = busy;
  button.textContent = busy ? "Loading…" : "Load earlier messages";
  button.onclick = onClick && !busy ? () => onClick() : null;
}

/** Remember what the reader is looking at; the returned function puts the
 *  view back there after messages were added above it. */
export function keepScrollAnchor() {
  const s = $("message-scroll");
  const fromBottom = s.scrollHeight - s.scrollTop;
  return () => {
    s.scrollTop = s.scrollHeight - fromBottom;
  };
}
