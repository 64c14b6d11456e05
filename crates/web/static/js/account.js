// The signed-in user as pages show them: the name in the top bar, the
// avatar's initials, the settings page's account card.

import { $ } from "./util.js";

/** Paint the user wherever the page shows them. */
export function showUser(user) {
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
