// Confab — the signed-in app: the chat page (/app, /app/t/{id}) and settings.
//
// One ES module, no framework, no build step. The page HTML is a shell from
// the server; this script fills it in. The rules it lives by:
//
// - The access token lives only in a variable of this module. The refresh
//   token is an httpOnly cookie the script cannot read; we trade it for a new
//   access token at boot and shortly before each expiry. Nothing is written to
//   localStorage, sessionStorage or document.cookie.
// - Text from people (and from the model, while it streams) is inserted with
//   textContent. innerHTML is used for exactly one thing: the `html` field the
//   server sends for finished replies, which it has already sanitised.
// - The socket is allowed to drop at any moment. Every message carries a
//   client-generated id and stays in an outbox until acknowledged; after a
//   reconnect the outbox is re-sent (the server deduplicates by id) and the
//   shown thread is resumed from the highest sequence number we have seen.

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

const $ = (id) => document.getElementById(id);

/** Ids for client messages. crypto.randomUUID only exists in secure contexts
 *  (https or localhost); a self-hosted box reached over plain http on a LAN is
 *  not one, so fall back to getRandomValues, which exists everywhere. */
function uuid() {
  if (globalThis.crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class ApiError extends Error {
  constructor(status, error) {
    super(error.message);
    this.status = status;
    this.code = error.code;
    this.field = error.field;
  }
}

/** Read a Confab API error body (`{"error":{"code","message"}}`), tolerating
 *  anything else a proxy or a crash might produce. */
async function readError(response) {
  let data = null;
  try {
    data = await response.json();
  } catch {
    // Not JSON.
  }
  const e = data && data.error && typeof data.error === "object" ? data.error : {};
  const message =
    typeof e.message === "string" && e.message
      ? e.message
      : response.status >= 500
        ? "Something went wrong on our side. Please try again."
        : "That request didn't work. Please try again.";
  return { code: e.code || null, field: e.field || null, message };
}

// ---------------------------------------------------------------------------
// Session: the access token, kept in memory and refreshed before it expires
// ---------------------------------------------------------------------------

const session = {
  token: null,
  expiresAt: 0, // ms since epoch
  user: null,
  timer: 0,
  inFlight: null,
};

/** Set once the page is navigating away (logout, session gone); stops the
 *  socket from reconnecting in the meantime. */
let leaving = false;

/** Go to the login page. Returns a promise that never settles, so callers can
 *  `await` it and nothing after runs while the browser navigates. */
function goToLogin() {
  if (!leaving) {
    leaving = true;
    closeSocket(1000, "leaving");
    location.assign("/login");
  }
  return new Promise(() => {});
}

/** Trade the refresh cookie for a fresh access token.
 *
 *  Refreshes are serialised: one in flight per tab (callers share its
 *  promise), and, where the browser supports Web Locks, one at a time across
 *  tabs. The refresh token rotates on every use, so two concurrent refreshes
 *  would race on the same cookie; queued, the second simply spends the token
 *  the first one received. */
function refreshToken() {
  if (!session.inFlight) {
    const run = () => doRefresh();
    const p = navigator.locks ? navigator.locks.request("confab-token-refresh", run) : run();
    session.inFlight = p.finally(() => {
      session.inFlight = null;
    });
  }
  return session.inFlight;
}

async function doRefresh() {
  let response;
  try {
    response = await fetch("/v1/auth/refresh", {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        Accept: "application/json",
        // Keep the refresh token out of the JSON: it lives only in the
        // httpOnly cookie, where no script (ours included) can read it.
        "X-Confab-Refresh-Transport": "cookie",
      },
      body: "{}",
    });
  } catch {
    throw new ApiError(0, { message: "We couldn't reach Confab. Check your connection." });
  }
  if (response.status === 401 || response.status === 403) return goToLogin();
  if (!response.ok) throw new ApiError(response.status, await readError(response));

  const data = await response.json();
  session.token = data.access_token;
  const expiresIn = Number(data.expires_in) || 60;
  session.expiresAt = Date.now() + expiresIn * 1000;
  if (data.user) {
    session.user = data.user;
    onUser(data.user);
  }
  scheduleRefresh(expiresIn);
  // A socket that is already authenticated keeps its identity without a
  // reconnect: hand it the new token before the old one lapses (else the
  // server closes it with 4001).
  if (sock.ready) sendFrame({ type: "reauth", token: session.token });
  return session.token;
}

/** Refresh about a minute before expiry; for short-lived tokens (tests use
 *  seconds) at 80 % of their life instead. max(0.8·e, e − 60) is exactly
 *  that: it picks "60 s before" once the token lives longer than 5 minutes. */
function scheduleRefresh(expiresIn) {
  clearTimeout(session.timer);
  const delay = Math.max(1000, Math.max(expiresIn * 0.8, expiresIn - 60) * 1000);
  session.timer = setTimeout(refreshInBackground, delay);
}

function refreshInBackground() {
  refreshToken().catch(() => {
    // Transient (network, 5xx): try again soon. A 401 already navigated away.
    clearTimeout(session.timer);
    session.timer = setTimeout(refreshInBackground, 5000);
  });
}

// Background tabs throttle timers and laptops sleep; when the page comes
// back, make sure the token is not about to lapse.
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && session.token && session.expiresAt - Date.now() < 30_000) {
    refreshInBackground();
  }
});

/** Call the API with the access token. A 401 means the token expired under
 *  us (sleep, clock skew): refresh once and retry. */
async function api(path, { method = "GET", body } = {}, retried = false) {
  const headers = { Accept: "application/json", Authorization: `Bearer ${session.token}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, { message: "We couldn't reach Confab. Check your connection." });
  }
  if (response.status === 401 && !retried) {
    await refreshToken();
    return api(path, { method, body }, true);
  }
  if (!response.ok) throw new ApiError(response.status, await readError(response));
  if (response.status === 204) return null;
  return response.json();
}

async function logout(button) {
  if (button) {
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
  }
  leaving = true;
  const call = () =>
    fetch("/v1/auth/logout", {
      method: "POST",
      credentials: "same-origin",
      headers: { Authorization: `Bearer ${session.token}`, "Content-Type": "application/json" },
      body: "{}",
    });
  try {
    let response = await call();
    // An expired access token must not leave the session alive on the server.
    if (response.status === 401) {
      leaving = false;
      await refreshToken();
      leaving = true;
      response = await call();
    }
  } catch {
    // Offline: the cookie is still cleared locally by leaving; nothing else to do.
  }
  closeSocket(1000, "logged out");
  location.assign("/login");
}

/** Paint the signed-in user wherever the page shows them. */
function onUser(user) {
  const name = user.display_name || user.email || "";
  for (const el of document.querySelectorAll('[data-testid="user-display-name"]')) el.textContent = name;
  const avatar = $("user-avatar");
  if (avatar) avatar.textContent = initials(name);
  const sName = $("settings-display-name");
  if (sName) sName.textContent = user.display_name || "—";
  const sEmail = $("settings-email");
  if (sEmail) sEmail.textContent = user.email || "—";
  const details = $("account-details");
  if (details) details.setAttribute("aria-busy", "false");
}

function initials(name) {
  const parts = name.trim().split(/\s+/).filter(Boolean);
  if (parts.length === 0) return "";
  const first = [...parts[0]][0] || "";
  const last = parts.length > 1 ? [...parts[parts.length - 1]][0] || "" : "";
  return (first + last).toUpperCase();
}

// ---------------------------------------------------------------------------
// Banners (notices and errors above the chat)
// ---------------------------------------------------------------------------

/** Show (or replace) a banner. `key` identifies it, so the same kind of
 *  notice is never stacked twice. */
function showBanner({ key, kind = "info", testid, text, dismissible = true }) {
  const host = $("banners");
  if (!host) return null;
  let el = host.querySelector(`[data-banner="${key}"]`);
  if (!el) {
    el = document.createElement("div");
    el.dataset.banner = key;
    host.append(el);
  }
  el.className = `banner banner-${kind}`;
  el.setAttribute("role", kind === "error" ? "alert" : "status");
  if (testid) el.dataset.testid = testid;
  const p = document.createElement("p");
  p.textContent = text;
  el.replaceChildren(p);
  if (dismissible) {
    const close = document.createElement("button");
    close.type = "button";
    close.className = "icon-btn";
    close.setAttribute("aria-label", "Dismiss");
    close.innerHTML = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M6 6l12 12M18 6 6 18"/></svg>';
    close.addEventListener("click", () => el.remove());
    el.append(close);
  }
  return el;
}

function hideBanner(key) {
  const el = document.querySelector(`[data-banner="${key}"]`);
  if (el) el.remove();
}

// ---------------------------------------------------------------------------
// Chat state
// ---------------------------------------------------------------------------

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
  streams: new Map(), // message_id → { node, chunks, base }
};

/** Threads in the sidebar, by id. */
const threads = new Map();

/** Messages not yet acknowledged (and retries not yet sent), in order. */
const outbox = [];

// ---------------------------------------------------------------------------
// Socket
// ---------------------------------------------------------------------------

const sock = {
  ws: null,
  ready: false,
  /** Largest frame the server accepts (it says so in `ready`); the proxy's
   *  own limit until then. A bigger frame would get the socket closed. */
  maxFrameBytes: 64 * 1024,
  lastFrameAt: 0,
  attempt: 0,
  timer: 0,
  connectedOnce: false,
  agentNoticeDismissed: false,
};

const CLOSE_TOO_BIG = 1009;
const CLOSE_TOKEN_EXPIRED = 4001;
const CLOSE_INVALID_TOKEN = 4002;
const CLOSE_SESSION_REVOKED = 4003;

function setConnectionState(state) {
  const el = $("connection-status");
  if (!el) return;
  el.dataset.state = state;
  const label = {
    connecting: "Connecting…",
    connected: "Connected",
    reconnecting: "Reconnecting…",
    offline: "Offline",
  }[state];
  el.querySelector(".connection-label").textContent = label;
  el.title = label;
}

async function connect() {
  clearTimeout(sock.timer);
  if (leaving || sock.ws) return;
  // navigator.onLine is only a hint: with no interface up but loopback (a
  // laptop on a plane using Confab at localhost, an air-gapped server) it is
  // false while the server answers. Always try; the backoff paces failures.
  setConnectionState(sock.connectedOnce ? "reconnecting" : "connecting");
  // Authenticating with a token that is about to lapse would only earn a 4001.
  if (!session.token || session.expiresAt - Date.now() < 5000) {
    try {
      await refreshToken();
    } catch {
      scheduleReconnect();
      return;
    }
  }
  if (leaving || sock.ws) return;

  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const ws = new WebSocket(scheme + location.host + "/v1/ws");
  sock.ws = ws;
  sock.ready = false;
  // The token goes in the first frame, never in the URL (URLs end up in logs).
  ws.addEventListener("open", () => ws.send(JSON.stringify({ type: "auth", token: session.token })));
  ws.addEventListener("message", (event) => {
    if (ws !== sock.ws) return;
    sock.lastFrameAt = Date.now();
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      return;
    }
    handleFrame(frame);
  });
  ws.addEventListener("close", (event) => {
    if (ws === sock.ws) onSocketClosed(event);
  });
}

function onSocketClosed(event) {
  sock.ws = null;
  sock.ready = false;
  // Whatever was sent on the dead socket may not have arrived; send it again
  // after reconnecting (same client ids, so the server will not double it).
  for (const entry of outbox) {
    entry.inFlight = entry.sent;
    entry.sent = false;
  }
  if (leaving) return;

  if (event.code === CLOSE_SESSION_REVOKED) {
    goToLogin();
    return;
  }
  if (event.code === CLOSE_TOO_BIG) {
    // The server refused a frame as too large. Re-sending the same message
    // after reconnecting would loop, so fail what was in flight instead.
    for (let i = outbox.length - 1; i >= 0; i -= 1) {
      const entry = outbox[i];
      if (entry.kind !== "send" || !entry.inFlight) continue;
      outbox.splice(i, 1);
      const el = chat.byClientId.get(entry.clientMsgId);
      if (el) markFailed(el, { message: "This message is too long to send.", retryable: false });
    }
  }
  if (event.code === CLOSE_TOKEN_EXPIRED || event.code === CLOSE_INVALID_TOKEN) {
    setConnectionState("reconnecting");
    refreshToken().then(
      () => scheduleReconnect(),
      () => scheduleReconnect(),
    );
    return;
  }
  scheduleReconnect();
}

/** Exponential backoff with jitter, 0.5 s doubling to 10 s. The jitter keeps
 *  a restarted server from being hit by every tab in the same instant. */
function scheduleReconnect() {
  clearTimeout(sock.timer);
  if (leaving) return;
  const base = Math.min(10_000, 500 * 2 ** sock.attempt);
  const delay = base / 2 + Math.random() * (base / 2);
  sock.attempt += 1;
  setConnectionState(navigator.onLine === false ? "offline" : "reconnecting");
  sock.timer = setTimeout(connect, delay);
}

function closeSocket(code, reason) {
  clearTimeout(sock.timer);
  const ws = sock.ws;
  sock.ws = null;
  sock.ready = false;
  if (ws && ws.readyState <= WebSocket.OPEN) {
    try {
      ws.close(code, reason);
    } catch {
      // Already closing.
    }
  }
}

function sendFrame(frame) {
  const ws = sock.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN) return false;
  ws.send(JSON.stringify(frame));
  return true;
}

/** A connection can die without a close (a laptop changes networks, a NAT
 *  forgets us); the browser may take minutes to notice. Ping when the line
 *  has been quiet, and give up on a socket that stays silent after that. */
const HEARTBEAT_EVERY = 20_000;
const HEARTBEAT_DEAD_AFTER = 45_000;
setInterval(() => {
  if (!sock.ready || !sock.ws) return;
  const quiet = Date.now() - sock.lastFrameAt;
  if (quiet > HEARTBEAT_DEAD_AFTER) {
    const ws = sock.ws;
    closeSocket(4000, "heartbeat timeout");
    sock.ws = null;
    onSocketClosed({ code: 1006, target: ws });
  } else if (quiet > HEARTBEAT_EVERY) {
    sendFrame({ type: "ping" });
  }
}, 5_000);

window.addEventListener("offline", () => {
  if (document.body.dataset.page === "app" && !sock.ready) setConnectionState("offline");
});
window.addEventListener("online", () => {
  if (document.body.dataset.page !== "app" || leaving) return;
  if (sock.ready) {
    setConnectionState("connected");
  } else if (!sock.ws) {
    sock.attempt = 0;
    connect();
  }
});

// ---------------------------------------------------------------------------
// Frames from the server
// ---------------------------------------------------------------------------

function handleFrame(f) {
  switch (f.type) {
    case "ready":
      return onReady(f);
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
    default:
      // Unknown frames are ignored, so the server can add kinds without
      // breaking pages that are already open.
      return undefined;
  }
}

function onReady(f) {
  sock.ready = true;
  sock.attempt = 0;
  sock.connectedOnce = true;
  setConnectionState("connected");
  const limits = f.limits || {};
  if (Number.isFinite(limits.max_frame_bytes)) sock.maxFrameBytes = Math.min(limits.max_frame_bytes, 64 * 1024);
  if (Number.isFinite(limits.max_message_chars)) $("chat-input").maxLength = limits.max_message_chars;
  hideBanner("connection");

  const agent = f.agent || {};
  if (agent.offline && !sock.agentNoticeDismissed) {
    const el = showBanner({
      key: "agent",
      kind: "info",
      testid: "agent-notice",
      text: "You're chatting with Confab's built-in offline assistant. Connect a real model with CONFAB_LLM_BASE_URL — see the README.",
    });
    const close = el && el.querySelector("button");
    if (close) close.addEventListener("click", () => (sock.agentNoticeDismissed = true));
  } else if (!agent.offline) {
    hideBanner("agent");
  }

  // Catch up on the shown thread (a reply may have finished, or still be
  // streaming, while we were away), then deliver what is waiting to be sent.
  if (chat.threadId && !chat.loading) sendResume();
  flushOutbox();
}

function sendResume() {
  let after = chat.highestSeq;
  for (const seq of chat.openReplies.values()) after = Math.min(after, seq - 1);
  sendFrame({ type: "resume", thread_id: chat.threadId, after_seq: Math.max(0, after) });
}

function noteOpen(threadId, messageId, seq) {
  if (isShown(threadId) && messageId && Number.isFinite(seq)) chat.openReplies.set(messageId, seq);
}

/** Send what is waiting. Messages of a new chat wait for the first one's ack:
 *  sending them without a thread id would start a second thread. */
function flushOutbox() {
  if (!sock.ready) return;
  const draftsAwaitingThread = new Set();
  for (let i = 0; i < outbox.length; i += 1) {
    const entry = outbox[i];
    if (entry.kind === "retry") {
      if (sendFrame({ type: "retry", message_id: entry.messageId })) {
        outbox.splice(i, 1);
        i -= 1;
      }
      continue;
    }
    if (!entry.threadId) {
      if (draftsAwaitingThread.has(entry.draftId)) continue;
      draftsAwaitingThread.add(entry.draftId);
    }
    if (entry.sent) continue;
    const frame = { type: "send", client_msg_id: entry.clientMsgId, text: entry.text };
    if (entry.threadId) frame.thread_id = entry.threadId;
    entry.sent = sendFrame(frame);
  }
}

function isShown(threadId) {
  // A frame without a thread id can only be about what we are looking at.
  return !threadId || threadId === chat.threadId;
}

function noteSeq(threadId, seq) {
  if (isShown(threadId) && Number.isFinite(seq) && seq > chat.highestSeq) chat.highestSeq = seq;
}

function onAck(f) {
  const i = outbox.findIndex((e) => e.clientMsgId === f.client_msg_id);
  const entry = i >= 0 ? outbox.splice(i, 1)[0] : null;

  if (entry && !entry.threadId && f.thread_id) {
    // The first message of a new chat: the thread exists now.
    for (const other of outbox) {
      if (!other.threadId && other.draftId === entry.draftId) other.threadId = f.thread_id;
    }
    upsertThread({ id: f.thread_id, title: titleFrom(entry.text) }, { isNew: true });
    if (!chat.threadId && chat.draftId === entry.draftId) {
      chat.threadId = f.thread_id;
      history.replaceState({ threadId: f.thread_id }, "", threadPath(f.thread_id));
      markActiveThread();
      setThreadTitle();
    }
  } else if (f.thread_id) {
    bumpThread(f.thread_id);
  }

  const el = chat.byClientId.get(f.client_msg_id);
  if (el && isShown(f.thread_id)) {
    el.dataset.status = "complete";
    if (f.message_id) {
      el.dataset.messageId = f.message_id;
      chat.byMessageId.set(f.message_id, el);
    }
    footerOf(el).replaceChildren();
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
    supersedeRetried();
    el = addMessage({ role: "assistant", messageId: f.message_id, status: "streaming" });
    bumpThread(f.thread_id);
  } else if (el.dataset.status !== "streaming") {
    // A retried reply that restarts under the same id.
    el.dataset.status = "streaming";
    footerOf(el).replaceChildren();
    contentOf(el).replaceChildren();
    chat.streams.delete(f.message_id);
  }
  appendDelta(el, f.message_id, f.index, f.text || "");
}

/** Append streamed text. Deltas are keyed by `index`, so a replay after a
 *  reconnect (which may repeat some) never doubles text; the common case —
 *  the next index in order — is a cheap append to one text node. */
function appendDelta(el, messageId, index, text) {
  const keepAtBottom = nearBottom();
  let stream = chat.streams.get(messageId);
  if (!stream) {
    stream = { node: document.createTextNode(""), chunks: [], base: "" };
    contentOf(el).replaceChildren(stream.node);
    chat.streams.set(messageId, stream);
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
    return; // already applied
  } else if (index === stream.chunks.length) {
    stream.chunks[index] = text;
    stream.node.appendData(text);
  } else {
    // Out of order (a gap that a replay is filling): rebuild from the parts.
    stream.chunks[index] = text;
    stream.node.data = stream.base + stream.chunks.join("");
  }
  if (keepAtBottom) scrollToBottom();
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
  const keepAtBottom = nearBottom();
  if (typeof f.html === "string") {
    // Server-rendered and sanitised Markdown: the only innerHTML in this file.
    contentOf(el).innerHTML = f.html;
  }
  el.dataset.status = "complete";
  footerOf(el).replaceChildren();
  chat.streams.delete(f.message_id);
  if (keepAtBottom) scrollToBottom();
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
  if (m.role === "user" && m.client_msg_id && chat.byClientId.has(m.client_msg_id)) {
    // Our own message, stored before the socket dropped and replayed before
    // its (re-sent) ack: it is the acknowledgement, not a second message.
    onAck({ client_msg_id: m.client_msg_id, thread_id: threadId, message_id: id, seq: m.seq });
    return;
  }
  if (id && chat.byMessageId.has(id)) {
    if (m.status === "complete" && m.role === "assistant") onDone({ ...m, message_id: id, thread_id: threadId });
    return;
  }
  renderStored({ ...m, id });
  updateEmptyState();
}

function onError(f) {
  if (f.message_id) chat.openReplies.delete(f.message_id);
  let el = null;
  if (f.message_id) el = chat.byMessageId.get(f.message_id) || null;
  if (!el && f.client_msg_id) el = chat.byClientId.get(f.client_msg_id) || null;

  if (f.client_msg_id) {
    // The server refused the message; it must not be re-sent on reconnect.
    // The retry button puts it back.
    const i = outbox.findIndex((e) => e.clientMsgId === f.client_msg_id);
    if (i >= 0) outbox.splice(i, 1);
  }

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

function markFailed(el, { message, retryable, code }) {
  el.dataset.status = "failed";
  delete el.dataset.retrying;
  if (code) el.dataset.errorCode = code;
  const id = el.dataset.messageId;
  if (id) chat.streams.delete(id);
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
    button.addEventListener("click", () => retry(el));
    footer.append(button);
  }
}

/** Retry a failed message. A user message the server refused is sent again
 *  under its own client id; a failed reply is regenerated by id. */
function retry(el) {
  const footer = footerOf(el);
  const note = document.createElement("span");
  note.textContent = "Retrying…";
  footer.replaceChildren(note);
  el.dataset.status = "pending";

  if (el.dataset.role === "user" && !el.dataset.messageId) {
    outbox.push({
      kind: "send",
      clientMsgId: el.dataset.clientMsgId,
      text: el.dataset.text || contentOf(el).textContent,
      threadId: chat.threadId,
      draftId: chat.threadId ? null : chat.draftId,
      sent: false,
    });
  } else {
    el.dataset.retrying = "1";
    outbox.push({ kind: "retry", messageId: el.dataset.messageId });
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

// ---------------------------------------------------------------------------
// Rendering messages
// ---------------------------------------------------------------------------

const contentOf = (el) => el.querySelector('[data-testid="message-content"]');
const footerOf = (el) => el.querySelector(".message-footer");

function addMessage({ role, messageId, clientMsgId, status }) {
  const tpl = $("tpl-message");
  const el = tpl.content.firstElementChild.cloneNode(true);
  el.dataset.role = role;
  el.dataset.status = status;
  if (messageId) {
    el.dataset.messageId = messageId;
    chat.byMessageId.set(messageId, el);
  }
  if (clientMsgId) {
    el.dataset.clientMsgId = clientMsgId;
    chat.byClientId.set(clientMsgId, el);
  }
  el.querySelector(".message-author").textContent = role === "user" ? "You said:" : "Confab said:";
  if (role === "assistant") {
    const logo = document.querySelector(".empty-mark .logo");
    if (logo) el.querySelector(".message-avatar").append(logo.cloneNode(true));
  }
  $("message-list").append(el);
  updateEmptyState();
  return el;
}

/** Render a message from the API (or a replay). */
function renderStored(m) {
  const status = m.status || "complete";
  const el = addMessage({ role: m.role, messageId: m.id, status });
  const content = contentOf(el);
  if (m.role === "assistant" && status === "complete" && typeof m.html === "string") {
    content.innerHTML = m.html; // sanitised by the server
  } else {
    content.textContent = m.content || "";
  }
  if (m.role === "assistant" && status === "streaming") {
    const node = document.createTextNode(m.content || "");
    content.replaceChildren(node);
    chat.streams.set(m.id, { node, chunks: [], base: m.content || "", seeded: true });
  }
  if (status === "failed") {
    const e = m.error;
    const message = typeof e === "string" ? e : e && e.message;
    const retryable = e && typeof e === "object" && "retryable" in e ? Boolean(e.retryable) : true;
    markFailed(el, { message: message || "This reply couldn't be completed.", retryable, code: e && e.code });
  }
  return el;
}

function updateEmptyState() {
  const empty = $("empty-state");
  if (empty) empty.hidden = chat.loading || $("message-list").children.length > 0;
}

function nearBottom() {
  const s = $("message-scroll");
  return s.scrollHeight - s.scrollTop - s.clientHeight < 120;
}

function scrollToBottom() {
  const s = $("message-scroll");
  s.scrollTop = s.scrollHeight;
}

// ---------------------------------------------------------------------------
// Threads: sidebar and navigation
// ---------------------------------------------------------------------------

const threadPath = (id) => `/app/t/${encodeURIComponent(id)}`;

function titleFrom(text) {
  const t = text.replace(/\s+/g, " ").trim();
  return t.length > 60 ? t.slice(0, 60) : t;
}

function threadFromPath() {
  const m = location.pathname.match(/^\/app\/t\/([^/]+)\/?$/);
  return m ? decodeURIComponent(m[1]) : null;
}

async function loadThreads() {
  const list = $("thread-list");
  try {
    const data = await api("/v1/threads");
    for (const t of data.threads || []) threads.set(t.id, t);
    list.replaceChildren(...(data.threads || []).map(threadItem));
    markActiveThread();
    setThreadTitle();
  } catch (e) {
    showBanner({ key: "threads", kind: "error", text: `Couldn't load your conversations. ${e.message}` });
  } finally {
    list.setAttribute("aria-busy", "false");
    updateThreadEmpty();
  }
}

let reloadThreadsTimer = 0;
/** A frame named a thread we do not list (made in another tab): refetch the
 *  list, debounced so a burst of deltas costs one request. */
function reloadThreadsSoon() {
  clearTimeout(reloadThreadsTimer);
  reloadThreadsTimer = setTimeout(loadThreads, 500);
}

function threadItem(t) {
  const li = document.createElement("li");
  li.dataset.threadId = t.id;
  const a = document.createElement("a");
  a.dataset.testid = "thread-item";
  a.dataset.threadId = t.id;
  a.href = threadPath(t.id);
  a.textContent = t.title || "New chat";
  a.title = t.title || "New chat";
  li.append(a);
  return li;
}

function upsertThread(t, { isNew = false } = {}) {
  const list = $("thread-list");
  const known = threads.get(t.id);
  threads.set(t.id, { ...known, ...t, title: (known && known.title) || t.title });
  let li = list.querySelector(`li[data-thread-id="${CSS.escape(t.id)}"]`);
  if (!li) {
    li = threadItem(threads.get(t.id));
    if (isNew) li.classList.add("is-new");
  }
  if (list.firstElementChild !== li) list.prepend(li);
  updateThreadEmpty();
  markActiveThread();
}

/** Move a thread to the top of the list (it just had activity). */
function bumpThread(id) {
  if (!id) return;
  if (!threads.has(id)) {
    reloadThreadsSoon();
    return;
  }
  const list = $("thread-list");
  const li = list.querySelector(`li[data-thread-id="${CSS.escape(id)}"]`);
  if (li && list.firstElementChild !== li) list.prepend(li);
}

function updateThreadEmpty() {
  const empty = $("thread-empty");
  if (empty) empty.hidden = $("thread-list").children.length > 0;
}

function markActiveThread() {
  for (const a of document.querySelectorAll('[data-testid="thread-item"]')) {
    if (a.dataset.threadId === chat.threadId) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

function setThreadTitle() {
  const t = chat.threadId ? threads.get(chat.threadId) : null;
  const title = chat.threadId ? (t && t.title) || "Chat" : "New chat";
  $("thread-title").textContent = title;
  document.title = `${title} · Confab`;
}

function resetView() {
  chat.view += 1;
  chat.highestSeq = 0;
  chat.openReplies.clear();
  chat.byMessageId.clear();
  chat.byClientId.clear();
  chat.streams.clear();
  $("message-list").replaceChildren();
  hideBanner("chat-error");
  hideBanner("thread-missing");
}

function showNewChat({ push }) {
  resetView();
  chat.threadId = null;
  chat.draftId = uuid();
  chat.loading = false;
  $("thread-loading").hidden = true;
  if (push && location.pathname !== "/app") history.pushState({}, "", "/app");
  markActiveThread();
  setThreadTitle();
  updateEmptyState();
  $("chat-input").focus();
}

async function showThread(id, { push }) {
  resetView();
  const view = chat.view;
  chat.threadId = id;
  chat.loading = true;
  if (push) history.pushState({ threadId: id }, "", threadPath(id));
  markActiveThread();
  setThreadTitle();
  updateEmptyState();
  $("thread-loading").hidden = false;

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
  const pendingEls = [...$("message-list").children];
  const superseded = retriedFailures(messages || []);
  for (const m of messages || []) {
    if (chat.byMessageId.has(m.id)) continue;
    if (superseded.has(m.id)) {
      noteSeq(id, m.seq);
      continue;
    }
    renderStored(m);
    if (m.status !== "streaming") noteSeq(id, m.seq);
    else noteOpen(id, m.id, m.seq);
  }
  $("message-list").append(...pendingEls);

  chat.loading = false;
  $("thread-loading").hidden = true;
  updateEmptyState();
  scrollToBottom();
  if (sock.ready) sendResume();
}

/** Failed replies that were retried: a failed assistant message followed by
 *  another reply before the next question. The live view removes them when
 *  the new reply starts; a reload must look the same. */
function retriedFailures(messages) {
  const hidden = new Set();
  let failed = null;
  for (const m of messages) {
    if (m.role === "user") {
      failed = null;
    } else if (m.role === "assistant") {
      if (failed) hidden.add(failed);
      failed = m.status === "failed" ? m.id : null;
    }
  }
  return hidden;
}

// ---------------------------------------------------------------------------
// Composer
// ---------------------------------------------------------------------------

function submitMessage() {
  const input = $("chat-input");
  const text = input.value.trim();
  if (!text) return;
  input.value = "";
  autosize(input);
  updateSendButton();

  const clientMsgId = uuid();
  const tooBig =
    new TextEncoder().encode(JSON.stringify({ type: "send", client_msg_id: clientMsgId, thread_id: chat.threadId, text }))
      .length > sock.maxFrameBytes;
  if (tooBig) {
    // Sending it would only get the socket closed with 1009; say so here.
    const el = addMessage({ role: "user", clientMsgId, status: "failed" });
    contentOf(el).textContent = text;
    markFailed(el, { message: "This message is too long to send. Shorten it and try again.", retryable: false });
    scrollToBottom();
    return;
  }
  outbox.push({
    kind: "send",
    clientMsgId,
    text,
    threadId: chat.threadId,
    draftId: chat.threadId ? null : chat.draftId,
    sent: false,
  });
  const el = addMessage({ role: "user", clientMsgId, status: "pending" });
  el.dataset.text = text;
  contentOf(el).textContent = text;
  const note = document.createElement("span");
  note.textContent = sock.ready ? "Sending…" : "Will send when reconnected…";
  footerOf(el).append(note);
  scrollToBottom();
  flushOutbox();
}

function autosize(textarea) {
  // Style via the CSSOM, which the Content-Security-Policy allows (inline
  // style attributes in markup it does not).
  textarea.style.height = "auto";
  textarea.style.height = `${Math.min(textarea.scrollHeight, 240)}px`;
}

function updateSendButton() {
  $("chat-send").classList.toggle("is-empty", $("chat-input").value.trim() === "");
}

// ---------------------------------------------------------------------------
// Pages
// ---------------------------------------------------------------------------

function setSidebar(open) {
  $("app-shell").classList.toggle("sidebar-open", open);
  $("sidebar-toggle").setAttribute("aria-expanded", String(open));
  $("sidebar-backdrop").hidden = !open;
}

async function bootApp() {
  const input = $("chat-input");
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    submitMessage();
  });
  input.addEventListener("keydown", (event) => {
    // Enter sends, Shift+Enter is a newline; never while an IME is composing
    // (Enter there confirms a character, it does not mean "send").
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      submitMessage();
    }
  });
  input.addEventListener("input", () => {
    autosize(input);
    updateSendButton();
  });
  updateSendButton();

  $("new-chat").addEventListener("click", () => {
    setSidebar(false);
    showNewChat({ push: true });
  });
  $("thread-list").addEventListener("click", (event) => {
    const a = event.target.closest('a[data-testid="thread-item"]');
    // Let modified clicks open a new tab as links normally do.
    if (!a || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    setSidebar(false);
    if (a.dataset.threadId !== chat.threadId) showThread(a.dataset.threadId, { push: true });
  });
  window.addEventListener("popstate", () => {
    const id = threadFromPath();
    if (id) {
      if (id !== chat.threadId) showThread(id, { push: false });
    } else {
      showNewChat({ push: false });
    }
  });
  $("logout").addEventListener("click", (event) => logout(event.currentTarget));
  $("sidebar-toggle").addEventListener("click", () => setSidebar(true));
  $("sidebar-close").addEventListener("click", () => setSidebar(false));
  $("sidebar-backdrop").addEventListener("click", () => setSidebar(false));
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") setSidebar(false);
  });

  // Who are we? A 401 here goes to the login page.
  for (;;) {
    try {
      await refreshToken();
      break;
    } catch (e) {
      setConnectionState("offline");
      showBanner({ key: "connection", kind: "error", text: `${e.message} Retrying…`, dismissible: false });
      await sleep(3000);
    }
  }
  hideBanner("connection");

  const id = threadFromPath();
  connect();
  loadThreads();
  if (id) showThread(id, { push: false });
  else showNewChat({ push: false });
}

async function bootSettings() {
  $("logout").addEventListener("click", (event) => logout(event.currentTarget));
  try {
    await refreshToken();
    const me = await api("/v1/auth/me");
    const user = (me && me.user) || me;
    if (user) onUser(user);
  } catch (e) {
    showBanner({ key: "settings", kind: "error", testid: "settings-error", text: `Couldn't load your account. ${e.message}` });
  }
}

const page = document.body.dataset.page;
if (page === "app") bootApp();
else if (page === "settings") bootSettings();
