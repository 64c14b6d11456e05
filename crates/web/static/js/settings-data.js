// The settings page's data sections: export, import, delete all chats,
// delete the account.

import { deleteAccount, deleteAllThreads, exportAll, importFile } from "./data.js";
import { $ } from "./util.js";

function busy(el, on) {
  el.disabled = on;
  el.setAttribute("aria-busy", String(on));
}

function wireExports() {
  for (const button of document.querySelectorAll("[data-testid^=export-][data-format]")) {
    button.addEventListener("click", async () => {
      const status = $("export-status");
      busy(button, true);
      status.textContent = "Preparing your download…";
      try {
        const name = await exportAll(button.dataset.format);
        status.textContent = `Downloaded ${name}.`;
      } catch (e) {
        status.textContent = `The download failed: ${e.message}`;
      } finally {
        busy(button, false);
      }
    });
  }
}

function wireImport() {
  $("import-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const status = $("import-status");
    const file = $("import-file").files[0];
    if (!file) {
      status.textContent = "Choose a Confab JSON export first.";
      return;
    }
    const button = event.submitter || $("import-form").querySelector("button");
    busy(button, true);
    status.textContent = `Importing ${file.name}…`;
    try {
      const r = await importFile(file);
      const n = r.imported.threads;
      status.textContent = `Imported ${n} conversation${n === 1 ? "" : "s"} (${r.imported.messages} messages).`;
    } catch (e) {
      status.textContent = `Nothing was imported: ${e.message}`;
    } finally {
      busy(button, false);
    }
  });
}

function wireDeleteAll() {
  const ask = $("delete-all-chats");
  const yes = $("delete-all-confirm");
  const no = $("delete-all-cancel");
  const status = $("delete-all-status");
  const asking = (on) => {
    ask.hidden = on;
    yes.hidden = !on;
    no.hidden = !on;
  };
  ask.addEventListener("click", () => asking(true));
  no.addEventListener("click", () => asking(false));
  yes.addEventListener("click", async () => {
    busy(yes, true);
    try {
      const r = await deleteAllThreads();
      status.textContent = r.deleted
        ? `Deleted ${r.deleted} chat${r.deleted === 1 ? "" : "s"}. They are gone from the server, not hidden.`
        : "You had no chats to delete.";
    } catch (e) {
      status.textContent = `Nothing was deleted: ${e.message}`;
    } finally {
      busy(yes, false);
      asking(false);
    }
  });
}

function wireDeleteAccount(onDeleted) {
  const form = $("delete-account-form");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = $("delete-account-error");
    const password = $("delete-account-password").value;
    error.hidden = true;
    if (!password) {
      error.textContent = "Enter your password to confirm.";
      error.hidden = false;
      return;
    }
    const button = event.submitter || form.querySelector("button");
    busy(button, true);
    try {
      const r = await deleteAccount(password);
      onDeleted(r.message);
    } catch (e) {
      error.textContent = e.message;
      error.hidden = false;
      busy(button, false);
    }
  });
}

/** Replace the page with the confirmation: the account no longer exists,
 *  so nothing else on it can work. */
function showDeleted(message) {
  const main = $("main");
  const card = document.createElement("section");
  card.className = "card";
  card.dataset.testid = "account-deleted";
  card.setAttribute("role", "status");
  const h = document.createElement("h1");
  h.textContent = "Your account is deleted";
  const p = document.createElement("p");
  p.textContent = message;
  const a = document.createElement("a");
  a.className = "btn btn-primary";
  a.href = "/";
  a.textContent = "Back to the home page";
  card.append(h, p, a);
  main.replaceChildren(card);
  const back = document.querySelector('[data-testid="back-to-app"]');
  if (back) back.hidden = true;
}

export function wireDataSections(onAccountDeleted) {
  wireExports();
  wireImport();
  wireDeleteAll();
  wireDeleteAccount((message) => {
    showDeleted(message);
    onAccountDeleted();
  });
}
