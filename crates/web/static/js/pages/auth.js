// The sign-up and log-in pages.
//
// The forms post JSON to the auth service (through this origin, so the
// refresh-token cookie it sets is first-party, httpOnly and SameSite). On
// success the page moves to /app, whose script obtains an access token from
// that cookie. This script never sees or stores a token: nothing goes into
// localStorage, sessionStorage or document.cookie, so an XSS bug elsewhere
// has no long-lived credential to steal.

import { MESSAGES, SIGNED_OUT_REASONS, postCredentials } from "../api.js";

// Arriving here because a session ended: say why, not a silent redirect.
const signedOut = new URLSearchParams(location.search).get("signed_out");
const notice = document.getElementById("signed-out-reason");
if (notice && signedOut && Object.hasOwn(SIGNED_OUT_REASONS, signedOut)) {
  notice.textContent = SIGNED_OUT_REASONS[signedOut];
  notice.dataset.reason = signedOut;
  notice.hidden = false;
}

const ENDPOINTS = {
  signup: { url: "/v1/auth/signup", fields: ["display_name", "email", "password"] },
  login: { url: "/v1/auth/login", fields: ["email", "password"] },
};

/** A form's wording: it asks the person to act on what they typed. */
const FORM_MESSAGES = {
  ...MESSAGES,
  network: "We couldn't reach Confab. Check your connection and try again.",
  client: "That didn't work. Please check the form and try again.",
  tooMany: "Too many attempts. Please wait a moment and try again.",
};

for (const form of document.querySelectorAll("form[data-auth-form]")) {
  setUp(form);
}

function setUp(form) {
  const endpoint = ENDPOINTS[form.dataset.authForm];
  const formError = document.getElementById("form-error");
  const submit = form.querySelector('button[type="submit"]');
  const idleLabel = submit.textContent;
  let busy = false;

  // Editing a field clears its error: the message described the old value.
  form.addEventListener("input", (event) => {
    const input = event.target.closest("input[data-field]");
    if (input) setFieldError(input, null);
  });

  form.addEventListener("submit", async (event) => {
    // Always handled here: a native submit would put the password in a
    // request the server does not accept.
    event.preventDefault();
    if (busy) return;
    clearErrors();

    const body = {};
    for (const name of endpoint.fields) {
      const input = form.querySelector(`[data-field="${name}"]`);
      // Passwords are sent exactly as typed; spaces may be part of them.
      body[name] = name === "password" ? input.value : input.value.trim();
    }

    setBusy(true);
    try {
      await postCredentials(endpoint.url, body, FORM_MESSAGES);
    } catch (error) {
      setBusy(false);
      const input = error.field ? fieldInput(error.field) : null;
      if (input) {
        setFieldError(input, error.message);
        input.focus();
      }
      // The summary repeats the message: screen readers announce the alert,
      // and a long form may have the field scrolled out of view.
      showFormError(error.message);
      return;
    }
    // Keep the button busy: the next page is loading.
    location.assign("/app");
  });

  function setBusy(on) {
    busy = on;
    submit.disabled = on;
    submit.setAttribute("aria-busy", on ? "true" : "false");
    submit.textContent = on ? submit.dataset.busyLabel || idleLabel : idleLabel;
  }

  // The server names fields as in its JSON (`display_name`); accept the
  // dashed spelling too.
  function fieldInput(field) {
    const name = String(field).replace(/-/g, "_");
    return form.querySelector(`[data-field="${CSS.escape(name)}"]`);
  }

  function setFieldError(input, message) {
    const slot = document.getElementById(`${input.id}-error`);
    if (message) {
      input.setAttribute("aria-invalid", "true");
      if (slot) {
        slot.textContent = message;
        slot.hidden = false;
      }
    } else {
      input.removeAttribute("aria-invalid");
      if (slot) {
        slot.textContent = "";
        slot.hidden = true;
      }
    }
  }

  function showFormError(message) {
    formError.textContent = message;
    formError.hidden = false;
  }

  function clearErrors() {
    formError.textContent = "";
    formError.hidden = true;
    for (const input of form.querySelectorAll("input[data-field]")) setFieldError(input, null);
  }
}
