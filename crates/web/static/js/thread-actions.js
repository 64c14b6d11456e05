// The shown chat's own actions in the top bar: export it, rename it,
// delete it (after a confirmation, since deleting is permanent).

import { showBanner } from "./banners.js";
import { shownThread, showNewChat } from "./chat.js";
import { deleteThread, exportThread, renameThread } from "./data.js";
import { removeThread, retitleThread } from "./threads.js";
import { $ } from "./util.js";

function asking(on) {
  $("thread-delete").hidden = on;
  $("thread-delete-ask").hidden = !on;
}

export function wireThreadActions() {
  for (const button of document.querySelectorAll("#thread-actions [data-format]")) {
    button.addEventListener("click", async () => {
      const id = shownThread();
      if (!id) return;
      button.disabled = true;
      try {
        const name = await exportThread(id, button.dataset.format);
        showBanner({ key: "thread-action", kind: "info", testid: "thread-action-status", text: `Downloaded ${name}.` });
      } catch (e) {
        showBanner({ key: "thread-action", kind: "error", testid: "thread-action-status", text: `The download failed: ${e.message}` });
      } finally {
        button.disabled = false;
      }
    });
  }
  $("thread-rename").addEventListener("click", async () => {
    const id = shownThread();
    if (!id) return;
    const title = window.prompt("Rename this chat", $("thread-title").textContent || "");
    if (title === null || !title.trim()) return;
    try {
      const r = await renameThread(id, title.trim());
      retitleThread(id, r.thread.title);
    } catch (e) {
      showBanner({ key: "thread-action", kind: "error", testid: "thread-action-status", text: `The chat was not renamed: ${e.message}` });
    }
  });
  $("thread-delete").addEventListener("click", () => asking(true));
  $("thread-delete-cancel").addEventListener("click", () => asking(false));
  $("thread-delete-confirm").addEventListener("click", async () => {
    const id = shownThread();
    if (!id) return;
    const button = $("thread-delete-confirm");
    button.disabled = true;
    try {
      await deleteThread(id);
      removeThread(id);
      showNewChat({ push: true });
      showBanner({
        key: "thread-action",
        kind: "info",
        testid: "thread-action-status",
        text: "The chat is deleted — from the server too, not just hidden.",
      });
    } catch (e) {
      showBanner({ key: "thread-action", kind: "error", testid: "thread-action-status", text: `The chat was not deleted: ${e.message}` });
    } finally {
      button.disabled = false;
      asking(false);
    }
  });
}
