// The signed-in user as pages show them: the name in the top bar, the
// avatar's initials, the settings page's account card.

import { $ } from "./util.js";

/** Paint the user wherever the page shows them. */
export function showUser(user) {
  const name = user.display_name || user.email || "";
  for (const el of document.querySelectorAll('[data-testid="user-display-name"]')) {
    el.textContent = name;
    if (user.email) el.title = user.email;
  }
  for (const id of ["user-avatar", "profile-avatar"]) paintAvatar($(id), user, name);
  const sName = $("settings-display-name");
  if (sName) sName.textContent = user.display_name || "—";
  const sEmail = $("settings-email");
  if (sEmail) sEmail.textContent = user.email || "—";
  // Links to the admin console, for admins only (the console itself checks
  // on the server; this only spares others a link to a 403).
  for (const el of document.querySelectorAll("[data-admin-only]")) el.hidden = user.role !== "admin";
  const details = $("account-details");
  if (details) details.setAttribute("aria-busy", "false");
}

/** The uploaded picture, or the initials when there is none. */
function paintAvatar(el, user, name) {
  if (!el) return;
  el.textContent = "";
  if (user.avatar_url) {
    const img = document.createElement("img");
    img.src = user.avatar_url;
    img.alt = "";
    el.append(img);
    el.dataset.avatar = "picture";
  } else {
    el.textContent = initials(name);
    el.dataset.avatar = "initials";
  }
}

function initials(name) {
  const parts = name.trim().split(/\s+/).filter(Boolean);
  if (parts.length === 0) return "";
  const first = [...parts[0]][0] || "";
  const last = parts.length > 1 ? [...parts[parts.length - 1]][0] || "" : "";
  return (first + last).toUpperCase();
}
