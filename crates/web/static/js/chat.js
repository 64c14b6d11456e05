// The conversation on screen: which thread is shown, what we know of its
// messages, the frames from the server that change them, and what the user
// sends.
//
// Resume rule: after a reconnect (or once a thread has loaded) every thread
// this page holds state for — the shown one, and each one it showed or sent
// to before — is resumed from the highest sequence number of a committed
// event seen in it, but below any reply there still being generated, so
// nothing is skipped; a resume answered with `more` goes on from where its
// page stopped; deltas a replay repeats are dropped by index (render.js).
//
// History loads newest first (one page), with "Load earlier" going back.
// Messages the server has not acknowledged live in the outbox, which keeps
// them across reloads: they show as pending in their thread and are sent
// when the socket is ready; leaving the page meanwhile asks first.

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
  /** What the page knows of each thread it holds (thread id → state), to
   *  resume them all after a reconnect:
   *  - `highestSeq`: the highest sequence number of a *committed* event (a
   *    stored message, an ack, a done). Deltas are deliberately not counted:
   *    resuming after a delta's seq could skip the rest of a reply, while
   *    resuming a little early only replays deltas we drop by index.
   *  - `openReplies`: replies still being generated, message_id → seq. A
   *    resume must start below the oldest of them, even when later events (a
   *    message sent meanwhile) pushed highestSeq past it. */
  threads: new Map(),
  /** The oldest seq shown, for "Load earlier" (0: nothing earlier). */
  oldestShown: 0,
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
  chat.oldestShown = 0;
  render.setLoadEarlier(null);
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
  showUnsent();
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
  let hasEarlier = false;
  try {
    const data = await api(`/v1/threads/${encodeURIComponent(id)}/messages?limit=${HISTORY_PAGE}`);
    messages = data.messages || [];
    hasEarlier = Boolean(data.has_earlier);
  } catch (e) {
    if (view !== chat.view) return;
    const text =
      e.status === 404
        ? "This conversation doesn't exist or was deleted."
        : `Couldn't load this conversation. ${e.message}`;
    showBanner({ key: "thread-missing", kind: "error", testid: "chat-error", text });
  }
  if (view !== chat.view) return;

  // What we knew of this thread is replaced by what was just loaded.
  chat.threads.set(id, { highestSeq: 0, openReplies: new Map() });
  // Messages typed while loading were appended already; stored ones go
  // before them.
  const pendingEls = render.listedMessages();
  for (const m of messages || []) {
    if (chat.byMessageId.has(m.id)) continue;
    if (m.role === "user" && m.client_msg_id && chat.byClientId.has(m.client_msg_id)) {
      // A pending message that was stored after all (its ack was lost).
      onAck({ client_msg_id: m.client_msg_id, thread_id: id, message_id: m.id, seq: m.seq });
      continue;
    }
    if (m.role === "user" && m.client_msg_id && outbox.isWaiting(m.client_msg_id)) outbox.remove(m.client_msg_id);
    noteStored(id, m);
    if (isSuperseded(m)) continue;
    renderStored(m);
  }
  render.moveToEnd(pendingEls);
  if (messages && messages.length) chat.oldestShown = messages[0].seq;
  render.setLoadEarlier(hasEarlier ? loadEarlier : null);

  chat.loading = false;
  showUnsent();
  render.setLoading(false);
  render.updateEmptyState(chat.loading);
  render.scrollToBottom();
  if (isReady()) sendResume(id);
}

/** Messages per history page. */
const HISTORY_PAGE = 100;

/** Show the page of history before the oldest message shown, above it,
 *  keeping the view where it was. */
async function loadEarlier() {
  const view = chat.view;
  const id = chat.threadId;
  if (!id || chat.oldestShown <= 1) return;
  render.setLoadEarlier(loadEarlier, { busy: true });
  let data;
  try {
    data = await api(
      `/v1/threads/${encodeURIComponent(id)}/messages?before_seq=${chat.oldestShown}&limit=${HISTORY_PAGE}`,
    );
  } catch (e) {
    if (view !== chat.view) return;
    render.setLoadEarlier(loadEarlier);
    showBanner({ key: "chat-error", kind: "error", testid: "chat-error", text: `Couldn't load earlier messages. ${e.message}` });
    return;
  }
  if (view !== chat.view) return;
  const before = render.listedMessages();
  const anchor = render.keepScrollAnchor();
  for (const m of data.messages || []) {
    if (chat.byMessageId.has(m.id) || isSuperseded(m)) continue;
    renderStored(m);
  }
  // Rendered at the end; they belong before everything shown.
  render.moveToEnd(before);
  anchor();
  if (data.messages && data.messages.length) chat.oldestShown = data.messages[0].seq;
  render.setLoadEarlier(data.has_earlier ? loadEarlier : null);
}

/** Show what the outbox still holds for the shown view (after a reload):
 *  pending, sent when the socket is ready. */
function showUnsent() {
  for (const e of outbox.unsent()) {
    const here = chat.threadId ? e.threadId === chat.threadId : !e.threadId && e.draftId === chat.draftId;
    if (!here || chat.byClientId.has(e.clientMsgId)) continue;
    const el = addMessage({ role: "user", clientMsgId: e.clientMsgId, status: "pending" });
    el.dataset.text = e.text;
    render.contentOf(el).textContent = e.text;
    render.setNote(el, isReady() ? "Sending…" : "Will send when reconnected…");
  }
}

/** The page starts with the outbox an earlier visit left (see outbox.js).
 *  On /app, the first unsent new chat becomes the one shown. */
export function restoreOutbox(userId) {
  const adopted = outbox.attach(userId);
  const draft = adopted.find((e) => !e.threadId && e.draftId);
  if (draft && !chat.threadId) chat.draftId = draft.draftId;
  for (const e of adopted) if (e.threadId) track(e.threadId);
  showUnsent();
  flushOutbox();
}

/** Leaving with unsent messages asks first (they would be sent on the next
 *  visit, but the user may not come back). */
export function warnBeforeLeaving() {
  window.addEventListener("beforeunload", (event) => {
    if (isLeaving() || !outbox.hasUnsent()) return;
    event.preventDefault();
    event.returnValue = "";
  });
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

// A message the server could not store yet (`unavailable`) is sent again
// after a wait that doubles (1 s, 2 s, … 15 s) until one is acknowledged.
const resend = { delay: 0, timer: null };

function resendLater() {
  if (resend.timer) return;
  resend.delay = Math.min(resend.delay ? resend.delay * 2 : 1000, 15000);
  resend.timer = setTimeout(() => {
    resend.timer = null;
    flushOutbox();
  }, resend.delay);
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

/** Resume one thread from what we hold of it (see the rule at the top). */
function sendResume(threadId) {
  const t = chat.threads.get(threadId);
  if (!t) return;
  let after = t.highestSeq;
  for (const seq of t.openReplies.values()) after = Math.min(after, seq - 1);
  sendFrame({ type: "resume", thread_id: threadId, after_seq: Math.max(0, after) });
}

/** Hold state for a thread from now on (it is resumed after reconnects). */
function track(threadId) {
  if (threadId && !chat.threads.has(threadId)) chat.threads.set(threadId, { highestSeq: 0, openReplies: new Map() });
}

function isShown(threadId) {
  // A frame without a thread id can only be about what we are looking at.
  return !threadId || threadId === chat.threadId;
}

/** The state of a frame's thread, if we hold it. */
function held(threadId) {
  return chat.threads.get(threadId || chat.threadId) || null;
}

function noteSeq(threadId, seq) {
  const t = held(threadId);
  if (t && Number.isFinite(seq) && seq > t.highestSeq) t.highestSeq = seq;
}

function noteOpen(threadId, messageId, seq) {
  const t = held(threadId);
  if (t && messageId && Number.isFinite(seq)) t.openReplies.set(messageId, seq);
}

function noteClosed(threadId, messageId) {
  if (threadId) {
    const t = held(threadId);
    if (t) t.openReplies.delete(messageId);
  } else {
    for (const t of chat.threads.values()) t.openReplies.delete(messageId);
  }
}

/** Account for a stored message of a held thread. */
function noteStored(threadId, m) {
  const id = m.id || m.message_id;
  if (m.status === "streaming") {
    noteOpen(threadId, id, m.seq);
  } else {
    noteSeq(threadId, m.seq);
    noteClosed(threadId, id);
  }
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
    case "resumed":
      return onResumed(f);
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
  for (const id of ids) {
    removeThread(id);
    chat.threads.delete(id); // nothing left to resume
  }
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

/** Catch up on every thread we hold (a reply may have finished, failed or
 *  still be streaming while we were away), then deliver what is waiting to
 *  be sent. The shown thread, if still loading, resumes once it has loaded. */
function onReady() {
  for (const id of chat.threads.keys()) {
    if (id === chat.threadId && chat.loading) continue;
    sendResume(id);
  }
  flushOutbox();
}

/** One page of a resume ended; ask for the next while there is more. */
function onResumed(f) {
  if (f.more && chat.threads.has(f.thread_id) && Number.isFinite(f.through_seq)) {
    sendFrame({ type: "resume", thread_id: f.thread_id, after_seq: f.through_seq });
  }
}

function onAck(f) {
  resend.delay = 0;
  const entry = outbox.remove(f.client_msg_id);
  track(f.thread_id);

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
  noteClosed(f.thread_id, f.message_id);
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
  noteStored(threadId, m);
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
    } else if (m.status === "failed" && m.role === "assistant") {
      // It failed while we were away (its instance died, say): a resume
      // says so even though its live `error` frame was missed.
      const el = chat.byMessageId.get(id);
      if (el.dataset.status !== "failed") {
        const e = m.error || {};
        markFailed(el, {
          message: e.message || "This reply couldn't be completed.",
          retryable: "retryable" in e ? Boolean(e.retryable) : true,
          code: e.code,
          requestId: m.request_id,
        });
      }
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

/** A message (or a Retry) the plan refused: the message leaves the list and
 *  goes back into the composer, kept for after an upgrade; the page shows
 *  the upgrade prompt (`confab:refused`, handled by the page). */
function onRefused(f) {
  let text = null;
  if (f.client_msg_id) {
    outbox.remove(f.client_msg_id);
    const el = chat.byClientId.get(f.client_msg_id);
    if (el) {
      text = el.dataset.text || render.contentOf(el).textContent;
      chat.byClientId.delete(f.client_msg_id);
      el.remove();
      render.updateEmptyState(chat.loading);
    }
  } else if (f.message_id) {
    const target = chat.byMessageId.get(f.message_id);
    if (target) {
      const wasFailed = target.dataset.retrying;
      delete target.dataset.retrying;
      delete target.dataset.regenerating;
      if (wasFailed) markFailed(target, { message: f.message, retryable: true, code: target.dataset.errorCode });
      else showControls(target);
    }
  }
  document.dispatchEvent(new CustomEvent("confab:refused", { detail: { frame: f, text } }));
}

function onError(f) {
  if (!f.message_id && !f.client_msg_id && HANDLED_BY_THE_SOCKET.has(f.code)) return;
  if (f.code === "quota_exceeded") return onRefused(f);
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
  if (f.message_id) noteClosed(f.thread_id, f.message_id);
  let el = null;
  if (f.message_id) el = chat.byMessageId.get(f.message_id) || null;
  if (!el && f.client_msg_id) el = chat.byClientId.get(f.client_msg_id) || null;

  // The server could not store it yet: it stays pending and is sent again.
  if (f.code === "unavailable" && f.client_msg_id && outbox.sendAgainLater(f.client_msg_id)) {
    if (el) render.setNote(el, "Not sent yet: the server can’t save messages right now. Trying again…");
    resendLater();
    return;
  }
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
