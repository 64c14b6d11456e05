// The settings page: the account card, "log out of this device", and your
// data (export, import, deleting chats or the account). Sessions and plan
// get their own modules and sections here.

import { api, endSession, logout, on, refreshToken } from "../api.js";
import { showUser } from "../account.js";
import { showBanner } from "../banners.js";
import { wireDataSections } from "../settings-data.js";
import { $ } from "../util.js";

async function boot() {
  $("logout").addEventListener("click", (event) => logout(event.currentTarget));
  wireDataSections(endSession);
  on("user", showUser);
  try {
    await refreshToken();
    const me = await api("/v1/auth/me");
    const user = (me && me.user) || me;
    if (user) showUser(user);
  } catch (e) {
    showBanner({
      key: "settings",
      kind: "error",
      testid: "settings-error",
      text: `Couldn't load your account. ${e.message}`,
    });
  }
}

boot();
