// The settings page's session list: every device signed in to the account
// (GET /v1/auth/sessions), "Sign out" per device and "Sign out everywhere".
//
// Sessions are named by their public handle, never by the session id inside
// access tokens. Signing this device out (its own row, or everywhere) goes
// through api.js, which ends the page's session and shows the log-in page
// with the reason; another device's row is simply marked signed out.

import { ApiError, api, logout, logoutEverywhere } from "./api.js";
import { showBanner } from "./banners.js";
import { $ } from "./util.js";

const REASONS = {
  signed_out: "Signed out",
  signed_out_elsewhere: "Signed out from another device",
  signed_out_everywhere: "Signed out everywhere",
  refresh_token_reuse: "Ended for security reasons",
  password_change: "Ended: password changed",
  account_deleted: "Ended: account deleted",
  account_disabled: "Ended: account disabled by an administrator",
  role_changed: "Ended: access changed",
};

/** How often the list is re-read while the page is open, so a device
 *  signed out elsewhere shows as such (and this page learns that its own
 *  session ended: the refused call leads to the log-in page). */
const REFRESH_EVERY_MS = 15_000;

export function startSessionList() {
  $("sign-out-everywhere").addEventListener("click", (event) => logoutEverywhere(event.currentTarget));
  load();
  setInterval(() => {
    if (document.visibilityState === "visible") load();
  }, REFRESH_EVERY_MS);
}

async function load() {
  const list = $("session-list");
  try {
    const data = await api("/v1/auth/sessions");
    render(list, (data && data.sessions) || []);
  } catch (e) {
    showBanner({
      key: "sessions",
      kind: "error",
      testid: "sessions-error",
      text: `Couldn't load your sessions. ${e.message}`,
    });
  } finally {
    list.setAttribute("aria-busy", "false");
  }
}

function render(list, sessions) {
  list.replaceChildren(...sessions.map(row));
  list.dataset.count = String(sessions.length);
}

function row(s) {
  const li = document.createElement("li");
  li.className = "session-row";
  li.dataset.testid = "session-row";
  li.dataset.sessionId = s.id;
  li.dataset.current = String(Boolean(s.current));
  li.dataset.state = s.revoked_at ? "ended" : "active";

  const main = document.createElement("div");
  main.className = "session-main";
  const device = document.createElement("p");
  device.className = "session-device";
  device.dataset.testid = "session-device";
  device.textContent = s.device;
  if (s.current) {
    const badge = document.createElement("span");
    badge.className = "session-badge";
    badge.textContent = "This device";
    device.append(" ", badge);
  }
  const meta = document.createElement("p");
  meta.className = "muted session-meta";
  const parts = [];
  if (s.ip) parts.push(s.ip);
  parts.push(`Signed in ${when(s.created_at)}`);
  if (s.revoked_at) {
    parts.push(`${REASONS[s.revoked_reason] || "Signed out"} ${when(s.revoked_at)}`);
  } else {
    parts.push(`Last active ${when(s.last_active_at)}`);
  }
  meta.textContent = parts.join(" · ");
  if (s.revoked_reason) li.dataset.reason = s.revoked_reason;
  main.append(device, meta);
  li.append(main);

  if (!s.revoked_at) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "btn btn-ghost";
    button.dataset.testid = "session-sign-out";
    button.textContent = "Sign out";
    button.setAttribute("aria-label", `Sign out ${s.device}${s.current ? " (this device)" : ""}`);
    button.addEventListener("click", () => signOutDevice(s, button));
    li.append(button);
  }
  return li;
}

async function signOutDevice(s, button) {
  if (s.current) return logout(button);
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    await api(`/v1/auth/sessions/${encodeURIComponent(s.id)}`, { method: "DELETE" });
  } catch (e) {
    button.disabled = false;
    button.removeAttribute("aria-busy");
    const gone = e instanceof ApiError && e.status === 404;
    showBanner({
      key: "sessions",
      kind: "error",
      testid: "sessions-error",
      text: gone ? "That session no longer exists." : `Couldn't sign that device out. ${e.message}`,
    });
  }
  await load();
}

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });

/** "2 minutes ago", "yesterday"; the exact time is in the tooltip of the row. */
function when(iso) {
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return "";
  const seconds = Math.round((t - Date.now()) / 1000);
  const steps = [
    [60, "second"],
    [60, "minute"],
    [24, "hour"],
    [30, "day"],
    [12, "month"],
    [Infinity, "year"],
  ];
  let value = seconds;
  for (const [size, unit] of steps) {
    if (Math.abs(value) < size) return relative.format(value, unit);
    value = Math.round(value / size);
  }
  return "";
}
