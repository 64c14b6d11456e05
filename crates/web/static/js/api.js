// The API client every page shares: one way to call Confab over HTTP, read
// its errors, and hold the signed-in session.
//
// - Every Confab error body is `{"error":{"code","message","field"?}}`;
//   anything else (a proxy page, an empty body, a dropped connection) becomes
//   an ApiError with a sentence a person can act on.
// - The access token lives only in a variable of this module. The refresh
//   token is an httpOnly cookie no script can read (the
//   `X-Confab-Refresh-Transport: cookie` header keeps it out of every JSON
//   body); we trade it for a new access token at boot and shortly before each
//   expiry. Nothing is written to localStorage, sessionStorage or
//   document.cookie.
// - Other modules learn about the session through `on("user" | "token" |
//   "leave", fn)`, so this module imports none of them (the socket, for one,
//   depends on it, never the other way).

/** Fallback sentences by failure kind, for responses that carry no message
 *  of their own. Pages with different wording (the sign-up form) pass their
 *  own set. */
export const MESSAGES = {
  network: "We couldn't reach Confab. Check your connection.",
  server: "Something went wrong on our side. Please try again.",
  client: "That request didn't work. Please try again.",
  tooMany: null,
};

export class ApiError extends Error {
  constructor(status, error) {
    super(error.message);
    this.status = status;
    this.code = error.code || null;
    this.field = error.field || null;
  }
}

/** Read a Confab API error body, tolerating anything else a proxy or a crash
 *  might produce. */
export async function readError(response, messages = MESSAGES) {
  let data = null;
  try {
    data = await response.json();
  } catch {
    // Not JSON: fall through to the generic message.
  }
  const e = data && data.error && typeof data.error === "object" ? data.error : {};
  let message = typeof e.message === "string" && e.message ? e.message : null;
  if (!message) {
    if (response.status === 429 && messages.tooMany) message = messages.tooMany;
    else if (response.status >= 500) message = messages.server;
    else message = messages.client;
  }
  return { code: e.code || null, field: e.field || null, message };
}

/** One fetch to this origin with JSON in and out. Resolves with the Response
 *  whatever its status; a network failure is an ApiError with status 0. */
export async function request(path, { method = "GET", body, token, headers = {}, messages = MESSAGES } = {}) {
  const h = { Accept: "application/json", ...headers };
  if (token) h.Authorization = `Bearer ${token}`;
  if (body !== undefined) h["Content-Type"] = "application/json";
  try {
    return await fetch(path, {
      method,
      headers: h,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, { message: messages.network });
  }
}

/** Asks auth to set the refresh token only as the httpOnly cookie. */
const COOKIE_TRANSPORT = { "X-Confab-Refresh-Transport": "cookie" };

/** Sign up or log in: post the form's fields. On success auth has set the
 *  refresh cookie and there is nothing to read; otherwise throws ApiError
 *  (with `field` when one input is to blame). */
export async function postCredentials(path, body, messages = MESSAGES) {
  const response = await request(path, { method: "POST", body, headers: COOKIE_TRANSPORT, messages });
  if (!response.ok) throw new ApiError(response.status, await readError(response, messages));
}

// ---------------------------------------------------------------------------
// The session: the access token, kept in memory and refreshed before expiry
// ---------------------------------------------------------------------------

export const session = {
  token: null,
  expiresAt: 0, // ms since epoch
  user: null,
  timer: 0,
  inFlight: null,
};

const listeners = { user: [], token: [], leave: [] };

/** Subscribe to the session: "user" (a profile arrived), "token" (a new
 *  access token), "leave" (the page is navigating to the login page). */
export function on(event, fn) {
  listeners[event].push(fn);
}

function emit(event, value) {
  for (const fn of listeners[event]) fn(value);
}

/** Set once the page is navigating away (logout, session gone); the socket
 *  checks it so it does not reconnect in the meantime. */
let leaving = false;
export const isLeaving = () => leaving;

/** Why a session ended, as the log-in page words it (`?signed_out=<code>`).
 *  The codes are auth's revocation reasons. */
export const SIGNED_OUT_REASONS = {
  signed_out: "You signed out.",
  signed_out_elsewhere: "You were signed out on another device.",
  signed_out_everywhere: "Signed out everywhere.",
  refresh_token_reuse: "Your session ended for security reasons.",
  password_change: "Your session ended for security reasons.",
  account_deleted: "Your account was deleted.",
  account_disabled: "An administrator disabled your account.",
  role_changed: "Your access changed. Please log in again.",
};

/** Every tab of this browser hears when one of them learns that the session
 *  ended, so a tab without a socket (settings) does not linger signed in;
 *  and of a profile change made on a page without a socket. */
const tabs = typeof BroadcastChannel === "function" ? new BroadcastChannel("confab-session") : null;
if (tabs) {
  tabs.addEventListener("message", (event) => {
    const m = event.data || {};
    if (m.type === "ended") goToLogin(m.reason, false);
    else if (m.type === "profile" && m.profile) profileChanged(m.profile);
  });
}

/** Tell this browser's other tabs about a profile change made here without
 *  a socket (the email-confirmation page); each applies it if it is newer
 *  than what it shows. */
export function tellTabsProfile(profile) {
  if (tabs) tabs.postMessage({ type: "profile", profile });
}

/** Go to the login page, saying why when the session ended (a known reason
 *  code). Returns a promise that never settles, so callers can `await` it
 *  and nothing after runs while the browser navigates. */
export function goToLogin(reason = null, tellOtherTabs = true) {
  if (!leaving) {
    leaving = true;
    const known = reason && Object.hasOwn(SIGNED_OUT_REASONS, reason) ? reason : null;
    if (known && tellOtherTabs && tabs) tabs.postMessage({ type: "ended", reason: known });
    emit("leave", "leaving");
    location.assign(known ? `/login?signed_out=${encodeURIComponent(known)}` : "/login");
  }
  return new Promise(() => {});
}

/** The reason a refused refresh (or a refused token) gives: auth's 401 body
 *  names it (`reason`), and reuse detection has its own code. */
function reasonOf(error) {
  if (error.code === "refresh_token_reused") return "refresh_token_reuse";
  return error.reason || null;
}

/** The socket was closed because the session was revoked. The close frame's
 *  reason is the revocation reason when the revocation reached an open
 *  socket; a socket refused at connect time only says `session_revoked`, and
 *  then auth is asked (the refresh is refused with the reason). */
export async function sessionEnded(closeReason) {
  if (Object.hasOwn(SIGNED_OUT_REASONS, closeReason)) return goToLogin(closeReason);
  try {
    await refreshToken();
  } catch {
    // Auth unreachable: we still know the session is gone.
  }
  return goToLogin();
}

/** Trade the refresh cookie for a fresh access token.
 *
 *  Refreshes are serialised: one in flight per tab (callers share its
 *  promise), and, where the browser supports Web Locks, one at a time across
 *  tabs. The refresh token rotates on every use, so two concurrent refreshes
 *  would race on the same cookie; queued, the second simply spends the token
 *  the first one received. */
export function refreshToken() {
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
  const response = await request("/v1/auth/refresh", { method: "POST", body: {}, headers: COOKIE_TRANSPORT });
  if (response.status === 401 || response.status === 403) {
    let error = {};
    try {
      error = (await response.json()).error || {};
    } catch {
      // No body: just go to the log-in page.
    }
    return goToLogin(reasonOf(error));
  }
  if (!response.ok) throw new ApiError(response.status, await readError(response));

  const data = await response.json();
  session.token = data.access_token;
  const expiresIn = Number(data.expires_in) || 60;
  session.expiresAt = Date.now() + expiresIn * 1000;
  if (data.user) {
    session.user = data.user;
    emit("user", data.user);
  }
  scheduleRefresh(expiresIn);
  // A socket that is already authenticated hands the new token on before the
  // old one lapses (else the server closes it with 4001).
  emit("token", session.token);
  return session.token;
}

/** Refresh about a minute before expiry; for short-lived tokens (tests use
 *  seconds) at 80 % of their life instead. max(0.8·e, e − 60) is exactly
 *  that: it picks "60 s before" once the token lives longer than 5 minutes. */
function scheduleRefresh(expiresIn) {
  clearTimeout(session.timer);
  const delay = Math.max(1000, Math.max(expiresIn * 0.8, expiresIn - 60) * 1000);
  session.timer = setTimeout(refreshInBackground, delay);
  watchVisibility();
}

function refreshInBackground() {
  refreshToken().catch(() => {
    // Transient (network, 5xx): try again soon. A 401 already navigated away.
    clearTimeout(session.timer);
    session.timer = setTimeout(refreshInBackground, 5000);
  });
}

let watchingVisibility = false;
/** Background tabs throttle timers and laptops sleep; when the page comes
 *  back, make sure the token is not about to lapse. */
function watchVisibility() {
  if (watchingVisibility) return;
  watchingVisibility = true;
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && session.token && session.expiresAt - Date.now() < 30_000) {
      refreshInBackground();
    }
  });
}

/** Call the API with the access token and return its JSON (null for 204). A
 *  401 means the token expired under us (sleep, clock skew): refresh once and
 *  retry. */
export async function api(path, { method = "GET", body } = {}, retried = false) {
  const response = await request(path, { method, body, token: session.token });
  if (response.status === 401 && !retried) {
    await refreshToken();
    return api(path, { method, body }, true);
  }
  if (!response.ok) throw new ApiError(response.status, await readError(response));
  if (response.status === 204) return null;
  return response.json();
}

/** The account is gone (deleted): forget the token and stop refreshing,
 *  without navigating, so the page can say what happened. */
export function endSession() {
  leaving = true;
  clearTimeout(session.timer);
  session.token = null;
  emit("leave", "account deleted");
}

/** Upload a file as the raw body (`PUT`), with the access token; its JSON
 *  answer, or an ApiError. */
export async function upload(path, file, retried = false) {
  let response;
  try {
    response = await fetch(path, {
      method: "PUT",
      headers: { Accept: "application/json", Authorization: `Bearer ${session.token}`, "Content-Type": file.type || "application/octet-stream" },
      credentials: "same-origin",
      body: file,
    });
  } catch {
    throw new ApiError(0, { message: MESSAGES.network });
  }
  if (response.status === 401 && !retried) {
    await refreshToken();
    return upload(path, file, true);
  }
  if (!response.ok) throw new ApiError(response.status, await readError(response));
  return response.json();
}

/** The profile changed (here, in another tab, on another device): every
 *  part of the page that shows the user repaints. An older version than the
 *  one shown is ignored, so frames arriving out of order cannot go back. */
export function profileChanged(profile) {
  const shown = session.user && Number(session.user.profile_version || session.user.version || 0);
  const incoming = Number(profile.profile_version || profile.version || 0);
  if (shown && incoming && incoming < shown) return;
  session.user = { ...(session.user || {}), ...profile, profile_version: incoming || shown };
  emit("user", session.user);
}

/** End this session on the server and go to the login page. */
export function logout(button) {
  return signOut("/v1/auth/logout", "signed_out", button);
}

/** End every session of the account (every device) and go to the login page. */
export function logoutEverywhere(button) {
  return signOut("/v1/auth/logout-all", "signed_out_everywhere", button);
}

async function signOut(path, reason, button) {
  if (button) {
    button.disabled = true;
    button.setAttribute("aria-busy", "true");
  }
  leaving = true;
  const call = () =>
    request(path, { method: "POST", body: {}, token: session.token, headers: COOKIE_TRANSPORT });
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
  // Other tabs of this browser hear it from their sockets (4003) or here.
  if (tabs) tabs.postMessage({ type: "ended", reason });
  emit("leave", "logged out");
  location.assign(`/login?signed_out=${reason}`);
}
