// Banners: notices and errors above the chat (and on the settings page).

import { $ } from "./util.js";

/** Show (or replace) a banner. `key` identifies it, so the same kind of
 *  notice is never stacked twice. */
export function showBanner({ key, kind = "info", testid, text, dismissible = true }) {
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
    // A constant icon, not data.
    close.innerHTML = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M6 6l12 12M18 6 6 18"/></svg>';
    close.addEventListener("click", () => el.remove());
    el.append(close);
  }
  return el;
}

export function hideBanner(key) {
  const el = document.querySelector(`[data-banner="${key}"]`);
  if (el) el.remove();
}
