// The settings page: the profile form (name, picture, time zone), the
// account card (with the email change, email-change.js), "log out of this device", the list of sessions
// (sessions.js), and your data (export, import,
// deleting chats or the account). A profile change made in another tab or
// device shows here when this tab is looked at again (it re-reads the
// profile then); the chat page, which holds a socket, shows it at once. No
// socket here: deleting the account closes the session's sockets, and a
// closed socket would send this page to the login page before it could
// confirm the deletion.

import { api, endSession, isLeaving, logout, on, profileChanged, refreshToken, upload } from "../api.js";
import { showUser } from "../account.js";
import { wireEmailChange } from "../email-change.js";
import { showIdentities } from "../identities.js";
import { showBanner } from "../banners.js";
import { wireDataSections } from "../settings-data.js";
import { wirePlanCard } from "../plan-settings.js";
import { startSessionList } from "../sessions.js";
import { $ } from "../util.js";

let editing = false;

function fillForm(user) {
  // Never overwrite what the user is typing.
  if (editing) return;
  $("profile-display-name").value = user.display_name || "";
  $("profile-time-zone").value = user.time_zone || "";
}

function setStatus(text) {
  $("profile-status").textContent = text;
}

function showError(e) {
  const el = $("profile-error");
  el.textContent = e ? e.message : "";
  el.hidden = !e;
}

async function save(event) {
  event.preventDefault();
  showError(null);
  const button = $("profile-save");
  button.disabled = true;
  setStatus("Saving…");
  const tz = $("profile-time-zone").value.trim();
  try {
    const me = await api("/v1/auth/me", {
      method: "PATCH",
      body: { display_name: $("profile-display-name").value, time_zone: tz === "" ? null : tz },
    });
    editing = false;
    profileChanged(me);
    setStatus("Saved.");
  } catch (e) {
    showError(e);
    setStatus("");
  } finally {
    button.disabled = false;
  }
}

async function changeAvatar(run) {
  showError(null);
  setStatus("Saving…");
  try {
    profileChanged(await run());
    setStatus("Saved.");
  } catch (e) {
    showError(e);
    setStatus("");
  }
}

function listTimeZones() {
  if (typeof Intl.supportedValuesOf !== "function") return;
  const list = $("time-zones");
  for (const zone of Intl.supportedValuesOf("timeZone")) {
    const option = document.createElement("option");
    option.value = zone;
    list.append(option);
  }
}

async function boot() {
  $("logout").addEventListener("click", (event) => logout(event.currentTarget));
  wireDataSections(endSession);
  wireEmailChange();
  $("profile-form").addEventListener("submit", save);
  $("profile-form").addEventListener("input", () => {
    editing = true;
  });
  $("profile-avatar-file").addEventListener("change", (event) => {
    const file = event.currentTarget.files[0];
    event.currentTarget.value = "";
    if (file) changeAvatar(() => upload("/v1/auth/me/avatar", file));
  });
  $("profile-avatar-remove").addEventListener("click", () =>
    changeAvatar(() => api("/v1/auth/me/avatar", { method: "DELETE" })),
  );
  on("user", (user) => {
    showUser(user);
    fillForm(user);
  });
  listTimeZones();
  try {
    await refreshToken();
    const me = await api("/v1/auth/me");
    if (me) profileChanged(me);
  } catch (e) {
    showBanner({
      key: "settings",
      kind: "error",
      testid: "settings-error",
      text: `Couldn't load your account. ${e.message}`,
    });
    return;
  }
  try {
    await showIdentities();
  } catch (e) {
    showBanner({
      key: "identities",
      kind: "error",
      testid: "identities-banner",
      text: `Couldn't load your sign-in methods. ${e.message}`,
    });
  }
  document.addEventListener("visibilitychange", async () => {
    if (document.visibilityState !== "visible" || isLeaving()) return;
    try {
      const fresh = await api("/v1/auth/me");
      if (fresh) profileChanged(fresh);
    } catch {
      // Offline for a moment: the page keeps what it shows.
    }
  });
  startSessionList();
  wirePlanCard();
}

boot();
