// The admin console (/admin, /admin/users, /admin/audit): one entry for its
// three pages. The page is a shell; it first asks auth who is signed in
// (GET /v1/auth/admin/whoami). Anyone but an admin gets the 403 notice and
// nothing else: every admin API answers them 403 too, so there is nothing
// to show.

import { ApiError, api, refreshToken } from "../api.js";
import { startAudit } from "../admin-audit.js";
import { startStatus } from "../admin-status.js";
import { startUsers } from "../admin-users.js";
import { showBanner } from "../banners.js";
import { $ } from "../util.js";

/** Not an admin (or no longer): hide everything but the notice. */
function forbidden() {
  const content = $("admin-content");
  content.hidden = true;
  content.replaceChildren();
  $("admin-nav").hidden = true;
  $("admin-forbidden").hidden = false;
  document.title = "403 · Confab";
}

async function boot() {
  let me;
  try {
    await refreshToken();
    me = await api("/v1/auth/admin/whoami");
  } catch (e) {
    if (e instanceof ApiError && e.status === 403) return forbidden();
    showBanner({ key: "admin", kind: "error", testid: "admin-error", text: `Couldn't open the console. ${e.message}` });
    return;
  }
  $("admin-nav").hidden = false;
  $("admin-content").hidden = false;
  const start = { status: startStatus, users: startUsers, audit: startAudit }[$("main").dataset.section];
  start({ me, forbidden });
}

boot();
