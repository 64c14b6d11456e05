// The conversation on screen: which thread is shown, what we know of its
// messages, the frames from the server that change them, and what the user
// sends.
//
// Resume rule: after a reconnect (or once a thread has loaded) the shown
// thread is resumed from the highest sequence number of a committed event we
// have seen, but below any reply still being generated, so nothing is
// skipped; deltas a replay repeats are dropped by index (render.js).

import * as outbox from "./outbox.js";
import * as render from "./render.js";
import { api, isLeaving } from "./api.js";
import { hideBanner, showBanner } from "./banners.js";
import { CLOSE_TOO_BIG, isReady, maxFrameBytes, sendFrame } from "./socket.js";
import { bumpThread, removeThread, setActive, threadPath, titleFrom, upsertThread } from "./threads.js";
import { $, uuid } from "./util.js";

const chat = {
  /** The thread shown, or null for a new chat that has no thread yet. */
  threadId: null,
  /** Names the "new chat" view until its first message is acknowledged and
   *  the server tells us the thread id. */
  draftId: uuid(),
  /** Bumped on every view change so late results for an old view are dropped. */
  view: 0,
  loading: false,
  /** Highest sequence number of a *committed* event in the shown thread (a
   *  stored message, an ack, a done). Deltas are deliberately not counted:
   *  resuming after a delta's seq could skip the rest of a reply, while
   *  resuming a little early only replays deltas we drop by index. */
  highestSeq: 0,
  /** Replies of the shown thread still being generated: message_id → seq.
   *  A resume must start below the oldest of them, even when later events
   *  (a message sent meanwhile) pushed highestSeq past it. */
  openReplies: new Map(),
  byMessageId: new Map(), // message_id → element
  byClientId: new Map(), // client_msg_id → element (user messages)
  streams: new Map(), // message_id → { node, chunks, base } (render.js)
  sources: new Map(), // message_id → a reply's Markdown (what Copy copies)
};

export const shownThread = () => chat.threadId;

// ---------------------------------------------------------------------------
// Views: a new chat, or a stored thread
// ---------------------------------------------------------------------------

function resetView() {
  chat.view += 1;
  chat.highestSeq = 0;
  chat.openReplies.clear();
  chat.byMessageId.clear();
  chat.byClientId.clear();
  chat.streams.clear();
  chat.sources.clear();
  render.clearMessages();
  hideBanner("chat-error");
  hideBanner("thread-missing");
}

export function showNewChat({ push }) {
  resetView();
  chat.threadId = null;
  chat.draftId = uuid();
  chat.loading = false;
  render.setLoading(false);
  if (push && location.pathname !== "/app") history.pushState({}, "", "/app");
  setActive(null);
  render.updateEmptyState(chat.loading);
  $("chat-input").focus();
}

export async function showThread(id, { push }) {
  resetView();
  const view = chat.view;
  chat.threadId = id;
  chat.loading = true;
  if (push) history.pushState({ threadId: id }, "", threadPath(id));
  setActive(id);
  render.updateEmptyState(chat.loading);
  render.setLoading(true);

  let messages = null;
  try {
    const data = await api(`/v1/threads/${encodeURIComponent(id)}/messages`);
    messages = data.messages || [];
  } catch (e) {
    if (view !== chat.view) return;
    const text =
      e.status === 404
        ? "This conversation doesn't exist or was deleted."
        : `Couldn't load this conversation. ${e.message}`;
    showBanner({ key: "thread-missing", kind: "error", testid: "chat-error", text });
  }
  if (view !== chat.view) return;

  // Messages typed while loading were appended already; stored ones go
  // before them.
  const pendingEls = render.listedMessages();
  for (const m of messages || []) {
    if (chat.byMessageId.has(m.id)) continue;
    if (isSuperseded(m)) {
      // An earlier attempt at a question (retried or regenerated): kept in
      // the history, not shown.
      noteSeq(id, m.seq);
      continue;
    }
    renderStored(m);
    if (m.status !== "streaming") noteSeq(id, m.seq);
    else noteOpen(id, m.id, m.seq);
  }
  render.moveToEnd(pendingEls);

  chat.loading = false;
  render.setLoading(false);
  render.updateEmptyState(chat.loading);
  render.scrollToBottom();
  if (isReady()) sendResume();
}

/** A reply attempt that a later attempt at its question replaced. */
const isSuperseded = (m) => m.role === "assistant" && m.current === false;

// ---------------------------------------------------------------------------
// Messages on screen
// ---------------------------------------------------------------------------

function addMessage({ role, messageId, clientMsgId, status, replyTo, replace }) {
  const el = render.messageElement({ role, messageId, clientMsgId, status, replyTo, replace });
  if (messageId) chat.byMessageId.set(messageId, el);
  if (clientMsgId) chat.byClientId.set(clientMsgId, el);
  render.updateEmptyState(chat.loading);
  return el;
}

/** Render a message from the API (or a replay). */
function renderStored(m, replace) {
  const status = m.status || "complete";
  const el = addMessage({ role: m.role, messageId: m.id, status, replyTo: m.reply_to, replace });
  const stream = render.fillStored(el, m, status);
  if (stream) chat.streams.set(m.id, stream);
  if (m.role === "assistant" && m.content) chat.sources.set(m.id, m.content);
  if (status === "failed") {
    const e = m.error;
    const message = typeof e === "string" ? e : e && e.message;
    const retryable = e && typeof e === "object" && "retryable" in e ? Boolean(e.retryable) : true;
    markFailed(el, {
      message: message || "This reply couldn't be completed.",
      retryable,
      code: e && e.code,
      requestId: m.request_id,
    });
  } else if (m.role === "assistant") {
    showControls(el);
  }
  return el;
}

function markFailed(el, failure) {
  const id = el.dataset.messageId;
  if (id) chat.streams.delete(id);
  render.showFailed(
    el,
    { ...failure, requestId: failure.requestId || failure.request_id },
    retry,
  );
}

/** The controls a reply offers in its state: Stop while it streams; Copy
 *  and Regenerate once it is finished. */
function showControls(el) {
  const id = el.dataset.messageId;
  if (el.dataset.role !== "assistant" || !id) return;
  if (el.dataset.status === "streaming") {
    render.setStreamingActions(el, stop);
  } else if (el.dataset.status === "complete" || el.dataset.status === "stopped") {
    render.setReplyActions(el, { source: () => chat.sources.get(id), onRegenerate: regenerate });
  }
}

/** Stop generating: the server keeps what the reply has and ends it with a
 *  `done` whose status is `stopped`. */
function stop(el) {
  const id = el.dataset.messageId;
  if (!id || !sendFrame({ type: "stop", message_id: id })) {
    render.setNote(el, "Not connected; try again in a moment.");
    showControls(el);
  }
}

/** Regenerate a finished reply: a new attempt at its question takes its
 *  place (the server announces it; the old one stays in the history). */
function regenerate(el) {
  el.dataset.regenerating = "1";
  render.clearActions(el);
  render.setNote(el, "Regenerating…");
  outbox.queueRetry(el.dataset.messageId);
  flushOutbox();
}

/** Retry a failed message. A user message the server refused is sent again
 *  under its own client id; a failed reply is regenerated by id. */
function retry(el) {
  render.setNote(el, "Retrying…");
  el.dataset.status = "pending";

  if (el.dataset.role === "user" && !el.dataset.messageId) {
    outbox.queueSend({
      clientMsgId: el.dataset.clientMsgId,
      text: el.dataset.text || render.contentOf(el).textContent,
      threadId: chat.threadId,
      draftId: chat.threadId ? null : chat.draftId,
    });
  } else {
    el.dataset.retrying = "1";
    outbox.queueRetry(el.dataset.messageId);
  }
  flushOutbox();
}

/** When a retried reply comes back under a new id, the failed attempt it
 *  replaces leaves the view. */
function supersedeRetried() {
  for (const old of document.querySelectorAll('[data-testid="message"][data-retrying]')) {
    if (old.dataset.role !== "assistant") continue;
    chat.byMessageId.delete(old.dataset.messageId);
    old.remove();
  }
}

/** Send what the user typed in the shown chat. */
export function sendMessage(text) {
  const clientMsgId = uuid();
  const tooBig =
    new TextEncoder().encode(JSON.stringify({ type: "send", client_msg_id: clientMsgId, thread_id: chat.threadId, text }))
      .length > maxFrameBytes();
  if (tooBig) {
    // Sending it would only get the socket closed with 1009; say so here.
    const el = addMessage({ role: "user", clientMsgId, status: "failed" });
    render.contentOf(el).textContent = text;
    markFailed(el, { message: "This message is too long to send. Shorten it and try again.", retryable: false });
    render.scrollToBottom();
    return;
  }
  outbox.queueSend({
    clientMsgId,
    text,
    threadId: chat.threadId,
    draftId: chat.threadId ? null : chat.draftId,
  });
  const el = addMessage({ role: "user", clientMsgId, status: "pending" });
  el.dataset.text = text;
  render.contentOf(el).textContent = text;
  render.setNote(el, isReady() ? "Sending…" : "Will send when reconnected…");
  render.scrollToBottom();
  flushOutbox();
}

function flushOutbox() {
  if (isReady()) outbox.flush(sendFrame);
}

// ---------------------------------------------------------------------------
// The connection, as the conversation sees it
// ---------------------------------------------------------------------------

/** The socket closed: re-send later what was in flight, except after a 1009
 *  (the server refused a frame as too large; re-sending would loop). */
export function connectionLost(code) {
  outbox.connectionLost();
  if (code !== CLOSE_TOO_BIG || isLeaving()) return;
  for (const clientMsgId of outbox.dropInFlight()) {
    const el = chat.byClientId.get(clientMsgId);
    if (el) markFailed(el, { message: "This message is too long to send.", retryable: false });
  }
}

function sendResume() {
  let after = chat.highestSeq;
  for (const seq of chat.openReplies.values()) after = Math.min(after, seq - 1);
  sendFrame({ type: "resume", thread_id: chat.threadId, after_seq: Math.max(0, after) });
}

function isShown(threadId) {
  // A frame without a thread id can only be about what we are looking at.
  return !threadId || threadId === chat.threadId;
}

function noteSeq(threadId, seq) {
  if (isShown(threadId) && Number.isFinite(seq) && seq > chat.highestSeq) chat.highestSeq = seq;
}

function noteOpen(threadId, messageId, seq) {
  if (isShown(threadId) && messageId && Number.isFinite(seq)) chat.openReplies.set(messageId, seq);
}

// ---------------------------------------------------------------------------
// Frames from the server
// ---------------------------------------------------------------------------

export function handleFrame(f) {
  switch (f.type) {
    case "ready":
      return onReady();
    case "ack":
      return onAck(f);
    case "delta":
      return onDelta(f);
    case "done":
      return onDone(f);
    case "error":
      return onError(f);
    case "message":
      return onStoredMessage(f);
    case "threads_deleted":
      return onThreadsDeleted(f);
    default:
      // Unknown frames are ignored, so the server can add kinds without
      // breaking pages that are already open.
      return undefined;
  }
}

/** Chats deleted here or on another device leave the list; the one shown
 *  gives way to a new chat, saying why. */
function onThreadsDeleted(f) {
  const ids = f.thread_ids || [];
  for (const id of ids) removeThread(id);
  if (chat.threadId && ids.includes(chat.threadId)) {
    showNewChat({ push: true });
    showBanner({
      key: "thread-action",
      kind: "info",
      testid: "thread-action-status",
      text: "This chat was deleted — from the server too, not just hidden.",
    });
  }
}

/** Catch up on the shown thread (a reply may have finished, or still be
 *  streaming, while we were away), then deliver what is waiting to be sent. */
function onReady() {
  if (chat.threadId && !chat.loading) sendResume();
  flushOutbox();
}

function onAck(f) {
  const entry = outbox.remove(f.client_msg_id);

  if (entry && !entry.threadId && f.thread_id) {
    // The first message of a new chat: the thread exists now.
    outbox.adoptThread(entry.draftId, f.thread_id);
    upsertThread({ id: f.thread_id, title: titleFrom(entry.text) }, { isNew: true });
    if (!chat.threadId && chat.draftId === entry.draftId) {
      chat.threadId = f.thread_id;
      history.replaceState({ threadId: f.thread_id }, "", threadPath(f.thread_id));
      setActive(f.thread_id);
    }
  } else if (f.thread_id) {
    bumpThread(f.thread_id);
  }

  const el = chat.byClientId.get(f.client_msg_id);
  if (el && isShown(f.thread_id)) {
    render.markSent(el, f.message_id);
    if (f.message_id) chat.byMessageId.set(f.message_id, el);
  }
  noteSeq(f.thread_id, f.seq);
  flushOutbox();
}

function onDelta(f) {
  noteOpen(f.thread_id, f.message_id, f.seq);
  if (!isShown(f.thread_id)) {
    bumpThread(f.thread_id);
    return;
  }
  // While the thread loads, its resume (sent after loading) replays this.
  if (chat.loading) return;
  let el = chat.byMessageId.get(f.message_id);
  if (el && el.dataset.status === "complete") return; // a replay of a finished reply
  if (el && el.dataset.status === "failed") return;
  if (!el) {
    // Its start (a `message` frame) was missed: show it at the end.
    supersedeRetried();
    el = addMessage({ role: "assistant", messageId: f.message_id, status: "streaming" });
    showControls(el);
    bumpThread(f.thread_id);
  } else if (el.dataset.status !== "streaming") {
    // A retried reply that restarts under the same id.
    render.restartStream(el);
    chat.streams.delete(f.message_id);
    showControls(el);
  }
  const stream = render.appendDelta(el, chat.streams.get(f.message_id), f.index, f.text || "", f.html);
  chat.streams.set(f.message_id, stream);
}

function onDone(f) {
  noteSeq(f.thread_id, f.seq);
  chat.openReplies.delete(f.message_id);
  bumpThread(f.thread_id);
  if (!isShown(f.thread_id) || chat.loading) return;
  let el = chat.byMessageId.get(f.message_id);
  if (!el) {
    supersedeRetried();
    el = addMessage({ role: "assistant", messageId: f.message_id, status: "complete" });
  }
  const stream = chat.streams.get(f.message_id);
  if (stream && !stream.seeded) chat.sources.set(f.message_id, stream.base + stream.chunks.join(""));
  else if (typeof f.content === "string") chat.sources.set(f.message_id, f.content);
  render.finishReply(el, f.html, f.status);
  chat.streams.delete(f.message_id);
  showControls(el);
}

/** A stored message replayed by the server on resume. */
function onStoredMessage(f) {
  const m = f.message && typeof f.message === "object" ? f.message : f;
  const threadId = m.thread_id || f.thread_id;
  noteSeq(threadId, m.status === "streaming" ? NaN : m.seq);
  if (m.status === "streaming") noteOpen(threadId, m.id || m.message_id, m.seq);
  else chat.openReplies.delete(m.id || m.message_id);
  bumpThread(threadId);
  if (!isShown(threadId) || chat.loading) return;
  const id = m.id || m.message_id;
  if (isSuperseded(m) && !chat.byMessageId.has(id)) return;
  if (m.role === "user" && m.client_msg_id && chat.byClientId.has(m.client_msg_id)) {
    // Our own message, stored before the socket dropped and replayed before
    // its (re-sent) ack: it is the acknowledgement, not a second message.
    onAck({ client_msg_id: m.client_msg_id, thread_id: threadId, message_id: id, seq: m.seq });
    return;
  }
  if (id && chat.byMessageId.has(id)) {
    if ((m.status === "complete" || m.status === "stopped") && m.role === "assistant") {
      onDone({ ...m, message_id: id, thread_id: threadId, status: m.status });
    }
    return;
  }
  // A new attempt at a question (Retry, Regenerate) takes the place of the
  // attempt on screen.
  let replace = null;
  if (m.role === "assistant" && m.reply_to) {
    replace = render.listedMessages().find((el) => el.dataset.replyTo === m.reply_to && el.dataset.messageId !== id);
    if (!replace) {
      replace = render
        .listedMessages()
        .find((el) => el.dataset.role === "assistant" && (el.dataset.retrying || el.dataset.regenerating));
    }
    if (replace) chat.byMessageId.delete(replace.dataset.messageId);
  }
  const el = renderStored({ ...m, id }, replace);
  if (m.status === "streaming") showControls(el);
  render.updateEmptyState(chat.loading);
}

/** Errors about the connection's credentials that the socket module handles
 *  by itself (refresh and reconnect, or the log-in page with the reason):
 *  nothing for the person to act on, so no banner. */
const HANDLED_BY_THE_SOCKET = new Set(["token_expired", "session_revoked"]);

function onError(f) {
  if (!f.message_id && !f.client_msg_id && HANDLED_BY_THE_SOCKET.has(f.code)) return;
  if (f.message_id && !f.thread_id) {
    // A `retry` or `stop` the server refused (the reply itself is fine).
    const target = chat.byMessageId.get(f.message_id);
    if (target) {
      const wasFailed = target.dataset.retrying;
      delete target.dataset.retrying;
      delete target.dataset.regenerating;
      if (wasFailed) {
        markFailed(target, { message: f.message, retryable: f.retryable, code: target.dataset.errorCode });
      } else {
        render.setNote(target, f.message || "That did not work.");
        showControls(target);
      }
      return;
    }
  }
  if (f.message_id) chat.openReplies.delete(f.message_id);
  let el = null;
  if (f.message_id) el = chat.byMessageId.get(f.message_id) || null;
  if (!el && f.client_msg_id) el = chat.byClientId.get(f.client_msg_id) || null;

  // The server refused the message; it must not be re-sent on reconnect.
  // The retry button puts it back.
  if (f.client_msg_id) outbox.remove(f.client_msg_id);

  if (!el && f.message_id && f.thread_id && isShown(f.thread_id) && !chat.loading) {
    // A reply that failed before its first token.
    supersedeRetried();
    el = addMessage({ role: "assistant", messageId: f.message_id, status: "failed" });
  }
  if (el) {
    markFailed(el, f);
    return;
  }
  if ((f.message_id || f.client_msg_id) && f.thread_id && !isShown(f.thread_id)) return;
  showBanner({
    key: "chat-error",
    kind: "error",
    testid: "chat-error",
    text: f.message || "Something went wrong. Please try again.",
  });
}
