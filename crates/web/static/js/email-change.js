// The settings page's email change: the new address and the current
// password go to auth, which mails a confirmation link to the new address
// (and a notice to the old one). The email shown stays the current one until
// the link is opened; the change then reaches this page like any profile
// change (it re-reads the profile when it is looked at again).

import { api } from "./api.js";
import { $ } from "./util.js";

function showError(e) {
  const el = $("email-error");
  el.textContent = e ? e.message : "";
  el.hidden = !e;
  for (const id of ["email-new", "email-password"]) {
    const input = $(id);
    const blamed = e && (e.field === input.name || (!e.field && id === "email-new"));
    if (blamed) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }
}

function setOpen(open) {
  $("email-form").hidden = !open;
  $("email-change-open").setAttribute("aria-expanded", String(open));
  if (open) {
    $("email-status").hidden = true;
    $("email-new").focus();
  } else {
    showError(null);
    $("email-password").value = "";
  }
}

async function submit(event) {
  event.preventDefault();
  showError(null);
  const newEmail = $("email-new").value.trim();
  const password = $("email-password").value;
  if (!newEmail) return showError({ field: "new_email", message: "Enter the new email address." });
  if (!password) return showError({ field: "password", message: "Enter your current password to confirm it is you." });
  const button = $("email-submit");
  button.disabled = true;
  try {
    const sent = await api("/v1/auth/me/email", {
      method: "POST",
      body: { new_email: newEmail, password },
    });
    $("email-new").value = "";
    setOpen(false);
    const status = $("email-status");
    status.textContent = sent.message;
    status.dataset.pendingEmail = sent.pending_email;
    status.hidden = false;
  } catch (e) {
    showError(e);
    if (e.field === "password") $("email-password").select();
  } finally {
    button.disabled = false;
  }
}

export function wireEmailChange() {
  $("email-change-open").addEventListener("click", () => setOpen($("email-form").hidden));
  $("email-cancel").addEventListener("click", () => setOpen(false));
  $("email-form").addEventListener("submit", submit);
}
