// The thread list in the sidebar, the shown thread's title, and thread URLs.
//
// Which thread is shown is decided by chat.js, which tells this module
// through `setActive`.

import { api } from "./api.js";
import { showBanner } from "./banners.js";
import { $ } from "./util.js";

/** Threads in the sidebar, by id. */
const threads = new Map();

/** The thread shown, or null for a new chat. */
let activeId = null;

export const threadPath = (id) => `/app/t/${encodeURIComponent(id)}`;

/** The thread named by the page's URL, or null on /app. */
export function threadFromPath() {
  const m = location.pathname.match(/^\/app\/t\/([^/]+)\/?$/);
  return m ? decodeURIComponent(m[1]) : null;
}

/** The title a new thread gets from its first message (as the server does). */
export function titleFrom(text) {
  const t = text.replace(/\s+/g, " ").trim();
  return t.length > 60 ? t.slice(0, 60) : t;
}

export async function loadThreads() {
  const list = $("thread-list");
  try {
    const data = await api("/v1/threads");
    for (const t of data.threads || []) threads.set(t.id, t);
    list.replaceChildren(...(data.threads || []).map(threadItem));
    markActive();
    setTitle();
  } catch (e) {
    showBanner({ key: "threads", kind: "error", text: `Couldn't load your conversations. ${e.message}` });
  } finally {
    list.setAttribute("aria-busy", "false");
    updateThreadEmpty();
  }
}

let reloadTimer = 0;
/** A frame named a thread we do not list (made in another tab): refetch the
 *  list, debounced so a burst of deltas costs one request. */
function reloadThreadsSoon() {
  clearTimeout(reloadTimer);
  reloadTimer = setTimeout(loadThreads, 500);
}

function threadItem(t) {
  const li = document.createElement("li");
  li.dataset.threadId = t.id;
  const a = document.createElement("a");
  a.dataset.testid = "thread-item";
  a.dataset.threadId = t.id;
  a.href = threadPath(t.id);
  a.textContent = t.title || "New chat";
  a.title = t.title || "New chat";
  li.append(a);
  return li;
}

/** Add a thread (or update one we know) and put it at the top. */
export function upsertThread(t, { isNew = false } = {}) {
  const list = $("thread-list");
  const known = threads.get(t.id);
  threads.set(t.id, { ...known, ...t, title: (known && known.title) || t.title });
  let li = list.querySelector(`li[data-thread-id="${CSS.escape(t.id)}"]`);
  if (!li) {
    li = threadItem(threads.get(t.id));
    if (isNew) li.classList.add("is-new");
  }
  if (list.firstElementChild !== li) list.prepend(li);
  updateThreadEmpty();
  markActive();
}

/** Move a thread to the top of the list (it just had activity). */
export function bumpThread(id) {
  if (!id) return;
  if (!threads.has(id)) {
    reloadThreadsSoon();
    return;
  }
  const list = $("thread-list");
  const li = list.querySelector(`li[data-thread-id="${CSS.escape(id)}"]`);
  if (li && list.firstElementChild !== li) list.prepend(li);
}

/** The thread now shown (null: a new chat): highlight it and title the page. */
export function setActive(id) {
  activeId = id;
  markActive();
  setTitle();
  const actions = $("thread-actions");
  if (actions) actions.hidden = !id;
}

/** A thread was deleted: it leaves the list. */
export function removeThread(id) {
  threads.delete(id);
  const li = $("thread-list").querySelector(`li[data-thread-id="${CSS.escape(id)}"]`);
  if (li) li.remove();
  updateThreadEmpty();
}

/** A thread was renamed. */
export function retitleThread(id, title) {
  const known = threads.get(id);
  if (known) threads.set(id, { ...known, title });
  const a = $("thread-list").querySelector(`a[data-thread-id="${CSS.escape(id)}"]`);
  if (a) {
    a.textContent = title;
    a.title = title;
  }
  setTitle();
}

function updateThreadEmpty() {
  const empty = $("thread-empty");
  if (empty) empty.hidden = $("thread-list").children.length > 0;
}

function markActive() {
  for (const a of document.querySelectorAll('[data-testid="thread-item"]')) {
    if (a.dataset.threadId === activeId) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

function setTitle() {
  const t = activeId ? threads.get(activeId) : null;
  const title = activeId ? (t && t.title) || "Chat" : "New chat";
  $("thread-title").textContent = title;
  document.title = `${title} · Confab`;
}
