// The page an email-change link opens: /email/confirm#token=…
//
// The secret is in the fragment, so it never reaches a server log or a
// Referer header. Opening the link changes nothing (mail scanners open
// links too); the click on "Confirm" posts the secret to auth, which
// changes the email once, before the link expires. No session is needed:
// the password was checked when the change was asked for, and the link
// proves the new mailbox.

import { ApiError, readError, request, tellTabsProfile } from "../api.js";
import { $ } from "../util.js";

const card = document.querySelector('[data-testid="email-confirm"]');
const token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
// Keep the secret out of the history and of anything copied from the bar.
history.replaceState(null, "", location.pathname);

function show(state, text) {
  card.dataset.state = state;
  if (state === "confirmed") $("confirm-title").textContent = "Email changed";
  $("email-confirm-message").textContent = text;
  const done = state !== "ready";
  $("email-confirm-submit").hidden = done;
  $("email-confirm-settings").hidden = !done;
}

async function confirm(event) {
  const button = event.currentTarget;
  button.disabled = true;
  try {
    const response = await request("/v1/auth/email/confirm", { method: "POST", body: { token } });
    if (!response.ok) throw new ApiError(response.status, await readError(response));
    const me = await response.json();
    // Open tabs of this browser update now (pages with a socket also hear
    // it from the backend, as every device does).
    tellTabsProfile(me);
    show("confirmed", `Your Confab email is now ${me.email}. Use it the next time you log in.`);
  } catch (e) {
    const state = e.code === "email_link_expired" || e.code === "email_link_used" ? e.code : "failed";
    show(state, e.message);
    button.disabled = false;
  }
}

if (!token) {
  show("failed", "This link is incomplete. Open the whole link from the email, or ask for a new one in Settings.");
} else {
  $("email-confirm-submit").addEventListener("click", confirm);
}
