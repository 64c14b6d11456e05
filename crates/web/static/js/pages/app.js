// The chat page (/app, /app/t/{id}): wires the page's controls to the
// modules that do the work, then boots — session first, then the socket, the
// thread list and the shown thread.

import { logout, on, profileChanged, refreshToken, session } from "../api.js";
import { showUser } from "../account.js";
import { hideBanner, showBanner } from "../banners.js";
import {
  connectionLost,
  handleFrame,
  restoreOutbox,
  sendMessage,
  showNewChat,
  showThread,
  shownThread,
  warnBeforeLeaving,
} from "../chat.js";
import { loadUsage, planChanged, showPlanBadge, showQuotaWarning, showUpgradePrompt } from "../plan.js";
import { startSocket } from "../socket.js";
import { wireThreadActions } from "../thread-actions.js";
import { loadThreads, threadFromPath } from "../threads.js";
import { $, sleep } from "../util.js";

const CONNECTION_LABELS = {
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  offline: "Offline",
};

function setConnectionState(state) {
  const el = $("connection-status");
  if (!el) return;
  el.dataset.state = state;
  const label = CONNECTION_LABELS[state];
  el.querySelector(".connection-label").textContent = label;
  el.title = label;
}

let agentNoticeDismissed = false;

/** What `ready` means for the page itself (chat.js resumes and flushes). */
function onReady(f) {
  const limits = f.limits || {};
  if (Number.isFinite(limits.max_message_chars)) $("chat-input").maxLength = limits.max_message_chars;
  hideBanner("connection");

  const agent = f.agent || {};
  const model = $("agent-model");
  model.textContent = agent.offline ? "Offline assistant" : agent.model || "";
  model.hidden = !model.textContent;
  if (agent.offline && !agentNoticeDismissed) {
    const el = showBanner({
      key: "agent",
      kind: "info",
      testid: "agent-notice",
      text:
        agent.notice ||
        "You're chatting with Confab's built-in offline assistant. Connect a real model with CONFAB_LLM_BASE_URL — see the README.",
    });
    const close = el && el.querySelector("button");
    if (close) close.addEventListener("click", () => (agentNoticeDismissed = true));
  } else if (!agent.offline) {
    hideBanner("agent");
  }
}

// ---------------------------------------------------------------------------
// Composer
// ---------------------------------------------------------------------------

function submitMessage() {
  const input = $("chat-input");
  const text = input.value.trim();
  if (!text) return;
  input.value = "";
  autosize(input);
  updateSendButton();
  sendMessage(text);
}

function autosize(textarea) {
  // Style via the CSSOM, which the Content-Security-Policy allows (inline
  // style attributes in markup it does not).
  textarea.style.height = "auto";
  textarea.style.height = `${Math.min(textarea.scrollHeight, 240)}px`;
}

function updateSendButton() {
  $("chat-send").classList.toggle("is-empty", $("chat-input").value.trim() === "");
}

function setSidebar(open) {
  $("app-shell").classList.toggle("sidebar-open", open);
  $("sidebar-toggle").setAttribute("aria-expanded", String(open));
  $("sidebar-backdrop").hidden = !open;
}

// ---------------------------------------------------------------------------
// Boot
// ---------------------------------------------------------------------------

/** A refused message comes back into the composer (before anything typed
 *  since), so it can be sent once the plan allows. */
function keepRefused({ frame, text }) {
  const input = $("chat-input");
  if (text) {
    const typed = input.value;
    input.value = typed.trim() ? `${text}\n${typed}` : text;
    input.dataset.kept = "1";
    autosize(input);
    updateSendButton();
  }
  showUpgradePrompt(frame, { newTab: true });
}

function wireControls() {
  wireThreadActions();
  const input = $("chat-input");
  document.addEventListener("confab:refused", (event) => keepRefused(event.detail));
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    submitMessage();
  });
  input.addEventListener("keydown", (event) => {
    // Enter sends, Shift+Enter is a newline; never while an IME is composing
    // (Enter there confirms a character, it does not mean "send").
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      submitMessage();
    }
  });
  input.addEventListener("input", () => {
    autosize(input);
    updateSendButton();
  });
  updateSendButton();

  $("new-chat").addEventListener("click", () => {
    setSidebar(false);
    showNewChat({ push: true });
  });
  $("thread-list").addEventListener("click", (event) => {
    const a = event.target.closest('a[data-testid="thread-item"]');
    // Let modified clicks open a new tab as links normally do.
    if (!a || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    setSidebar(false);
    if (a.dataset.threadId !== shownThread()) showThread(a.dataset.threadId, { push: true });
  });
  window.addEventListener("popstate", () => {
    const id = threadFromPath();
    if (id) {
      if (id !== shownThread()) showThread(id, { push: false });
    } else {
      showNewChat({ push: false });
    }
  });
  $("logout").addEventListener("click", (event) => logout(event.currentTarget));
  $("sidebar-toggle").addEventListener("click", () => setSidebar(true));
  $("sidebar-close").addEventListener("click", () => setSidebar(false));
  $("sidebar-backdrop").addEventListener("click", () => setSidebar(false));
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") setSidebar(false);
  });
}

async function boot() {
  wireControls();
  on("user", showUser);

  // Who are we? A 401 here goes to the login page.
  for (;;) {
    try {
      await refreshToken();
      break;
    } catch (e) {
      setConnectionState("offline");
      showBanner({ key: "connection", kind: "error", text: `${e.message} Retrying…`, dismissible: false });
      await sleep(3000);
    }
  }
  hideBanner("connection");

  const id = threadFromPath();
  // What an earlier visit typed and the server never acknowledged: shown as
  // pending and sent once the socket is ready.
  warnBeforeLeaving();
  if (id) showThread(id, { push: false });
  else showNewChat({ push: false });
  restoreOutbox(session.user && session.user.id);
  startSocket({
    onFrame(frame) {
      if (frame.type === "ready") onReady(frame);
      if (frame.type === "event" && frame.kind === "profile.updated" && frame.profile) {
        profileChanged(frame.profile);
        return;
      }
      if (frame.type === "event" && frame.kind === "quota.warning") {
        showQuotaWarning(frame.usage);
        return;
      }
      if (frame.type === "event" && frame.kind === "plan.changed") {
        planChanged(frame.plan);
        return;
      }
      handleFrame(frame);
    },
    onDropped: connectionLost,
    onState: setConnectionState,
  });
  loadThreads();
  loadUsage()
    .then((u) => {
      showPlanBadge(u.plan);
      if (u.usage && u.usage.warning) showQuotaWarning(u.usage);
    })
    .catch(() => {});
}

boot();
