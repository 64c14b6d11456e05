// The chat socket: one connection per page, kept alive for as long as the
// page is open.
//
// The socket is allowed to drop at any moment. This module reconnects with
// backoff, authenticates every new connection with a fresh-enough token (in
// the first frame, never in the URL), hands a refreshed token to the open
// connection (`reauth`), and notices connections that died without a close.
// What to do with frames, and with messages that were in flight when a
// connection dropped, is the caller's business (see chat.js and outbox.js):
// `startSocket` takes the hooks.

import { isLeaving, on, refreshToken, session, sessionEnded } from "./api.js";

export const CLOSE_TOO_BIG = 1009;
export const CLOSE_TOKEN_EXPIRED = 4001;
export const CLOSE_INVALID_TOKEN = 4002;
export const CLOSE_SESSION_REVOKED = 4003;

/** Diagnostics (`?debug-withhold-reauth`): never hand a refreshed token to
 *  the open socket, so the server closes it with 4001 when the token lapses
 *  and the reconnect path runs. Only makes this page behave worse. */
const WITHHOLD_REAUTH = new URLSearchParams(location.search).has("debug-withhold-reauth");

/** Counted on <html data-socket-connects data-socket-reauths>, so a person
 *  debugging (and the flow tests) can see whether the page stayed on one
 *  connection through token refreshes. */
const stats = { connects: 0, reauths: 0 };
function count(key) {
  stats[key] += 1;
  const name = key === "connects" ? "socketConnects" : "socketReauths";
  document.documentElement.dataset[name] = String(stats[key]);
}

/** The proxy's own limit on a browser frame, until `ready` says otherwise. */
const DEFAULT_MAX_FRAME_BYTES = 64 * 1024;

const sock = {
  ws: null,
  ready: false,
  /** Largest frame the server accepts (it says so in `ready`). A bigger
   *  frame would get the socket closed. */
  maxFrameBytes: DEFAULT_MAX_FRAME_BYTES,
  lastFrameAt: 0,
  attempt: 0,
  timer: 0,
  connectedOnce: false,
};

let hooks = {
  /** Every parsed frame from the server, `ready` included. */
  onFrame() {},
  /** The connection closed (or was given up on); the close code. Anything
   *  sent on it may not have arrived. */
  onDropped() {},
  /** "connecting" | "connected" | "reconnecting" | "offline". */
  onState() {},
};

/** True once the server has said `ready` on the current connection. */
export const isReady = () => sock.ready;
export const maxFrameBytes = () => sock.maxFrameBytes;

/** Wire the hooks, keep the connection alive from now on, and connect. */
export function startSocket(h) {
  hooks = { ...hooks, ...h };
  on("token", (token) => {
    if (sock.ready && !WITHHOLD_REAUTH) sendFrame({ type: "reauth", token });
  });
  on("leave", (reason) => closeSocket(1000, reason));
  setInterval(heartbeat, 5_000);
  window.addEventListener("offline", () => {
    if (!sock.ready) hooks.onState("offline");
  });
  window.addEventListener("online", () => {
    if (isLeaving()) return;
    if (sock.ready) {
      hooks.onState("connected");
    } else if (!sock.ws) {
      sock.attempt = 0;
      connect();
    }
  });
  connect();
}

async function connect() {
  clearTimeout(sock.timer);
  if (isLeaving() || sock.ws) return;
  // navigator.onLine is only a hint: with no interface up but loopback (a
  // laptop on a plane using Confab at localhost, an air-gapped server) it is
  // false while the server answers. Always try; the backoff paces failures.
  hooks.onState(sock.connectedOnce ? "reconnecting" : "connecting");
  // Authenticating with a token that is about to lapse would only earn a 4001.
  if (!session.token || session.expiresAt - Date.now() < 5000) {
    try {
      await refreshToken();
    } catch {
      scheduleReconnect();
      return;
    }
  }
  if (isLeaving() || sock.ws) return;

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
    if (frame.type === "ready") onReady(frame);
    if (frame.type === "reauthed") count("reauths");
    hooks.onFrame(frame);
  });
  ws.addEventListener("close", (event) => {
    if (ws === sock.ws) onSocketClosed(event.code, event.reason);
  });
}

function onReady(f) {
  count("connects");
  sock.ready = true;
  sock.attempt = 0;
  sock.connectedOnce = true;
  hooks.onState("connected");
  const limits = f.limits || {};
  if (Number.isFinite(limits.max_frame_bytes)) {
    sock.maxFrameBytes = Math.min(limits.max_frame_bytes, DEFAULT_MAX_FRAME_BYTES);
  }
}

function onSocketClosed(code, reason = "") {
  const wasReady = sock.ready;
  sock.ws = null;
  sock.ready = false;
  hooks.onDropped(code);
  if (isLeaving()) return;

  if (code === CLOSE_SESSION_REVOKED) {
    // Not a silent redirect: the log-in page says why (the close reason is
    // the revocation reason: signed out elsewhere, everywhere, security).
    sessionEnded(reason);
    return;
  }
  if (code === CLOSE_TOKEN_EXPIRED || code === CLOSE_INVALID_TOKEN) {
    hooks.onState("reconnecting");
    // A connection that was up and outlived its token is nothing to back off
    // from: it comes back at once with the new token. One refused before it
    // was ready (a clock far off, a bad token) backs off like any failure, so
    // it never loops against the server.
    refreshToken().then(
      () => (wasReady ? connect() : scheduleReconnect()),
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
  if (isLeaving()) return;
  const base = Math.min(10_000, 500 * 2 ** sock.attempt);
  const delay = base / 2 + Math.random() * (base / 2);
  sock.attempt += 1;
  // "Reconnecting…" whatever navigator.onLine says: we do keep trying (see
  // connect), and on a loopback-only machine onLine is false for good.
  hooks.onState("reconnecting");
  sock.timer = setTimeout(connect, delay);
}

export function closeSocket(code, reason) {
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

/** Send a frame on the open connection; false when there is none. */
export function sendFrame(frame) {
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
function heartbeat() {
  if (!sock.ready || !sock.ws) return;
  const quiet = Date.now() - sock.lastFrameAt;
  if (quiet > HEARTBEAT_DEAD_AFTER) {
    closeSocket(4000, "heartbeat timeout");
    onSocketClosed(1006);
  } else if (quiet > HEARTBEAT_EVERY) {
    sendFrame({ type: "ping" });
  }
}
