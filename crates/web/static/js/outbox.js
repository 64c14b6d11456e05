// The outbox: what the user sent that the server has not acknowledged yet,
// and retries not sent yet, in order.
//
// Every message carries a client-generated id and stays here until its
// `ack`; after a reconnect everything is sent again (the server deduplicates
// by id). No DOM, no socket: callers pass the send function in.
//
// Nothing typed is lost: the outbox is kept in localStorage under a key of
// the signed-in user (`confab:outbox:<user id>`), so a reload, a crash or a
// closed tab sends it on the next visit, with the same client ids. The key
// exists only while something is waiting (it holds the user's own unsent
// text, never a token). Two tabs of one user share it: each writes back the
// entries it holds plus the other tabs' that it has not seen acknowledged,
// and a resend from both is harmless (same id, one message).

const KEY_PREFIX = "confab:outbox:";

const entries = [];
/** Where this user's outbox is kept; null until `attach` (or when storage
 *  is unavailable, as in some private modes: then it lives in memory). */
let key = null;
/** Client ids this tab saw acknowledged or refused: they must not come back
 *  from another tab's copy in storage. */
const settled = new Set();

function readStored() {
  if (!key) return [];
  try {
    const list = JSON.parse(localStorage.getItem(key) || "[]");
    return Array.isArray(list) ? list.filter(isEntry) : [];
  } catch {
    return [];
  }
}

function isEntry(e) {
  return (
    e &&
    ((e.kind === "send" && typeof e.clientMsgId === "string" && typeof e.text === "string") ||
      (e.kind === "retry" && typeof e.messageId === "string"))
  );
}

const persistable = (e) =>
  e.kind === "send"
    ? { kind: "send", clientMsgId: e.clientMsgId, text: e.text, threadId: e.threadId || null, draftId: e.draftId || null }
    : { kind: "retry", messageId: e.messageId };

/** Write the outbox back (merged with what other tabs keep there). */
function save() {
  if (!key) return;
  const mine = new Set(entries.filter((e) => e.kind === "send").map((e) => e.clientMsgId));
  const others = readStored().filter(
    (e) => e.kind === "send" && !mine.has(e.clientMsgId) && !settled.has(e.clientMsgId),
  );
  const list = [...entries.map(persistable), ...others];
  try {
    if (list.length === 0) localStorage.removeItem(key);
    else localStorage.setItem(key, JSON.stringify(list));
  } catch {
    // Storage full or refused: the outbox still works for this page's life.
  }
}

/** Keep the outbox of `userId` from now on, and take over what an earlier
 *  page (or another tab) left unsent. Returns the entries taken over. */
export function attach(userId) {
  if (!userId) return [];
  try {
    localStorage.length; // throws where storage is disabled
  } catch {
    return [];
  }
  key = KEY_PREFIX + userId;
  const known = new Set(entries.map((e) => e.clientMsgId || e.messageId));
  const adopted = readStored().filter((e) => !known.has(e.clientMsgId || e.messageId));
  for (const e of adopted) entries.push({ ...e, sent: false });
  save();
  return adopted.filter((e) => e.kind === "send");
}

/** Messages not yet acknowledged (for a page that shows them as pending). */
export const unsent = () => entries.filter((e) => e.kind === "send");

/** Whether message `clientMsgId` is waiting for its ack. */
export const isWaiting = (clientMsgId) => entries.some((e) => e.clientMsgId === clientMsgId);

/** Whether leaving the page now would leave something unsent behind (it
 *  would be sent on the next visit, but the user should know). */
export const hasUnsent = () => entries.length > 0;

/** Queue a message. `threadId` is null for the first messages of a new chat,
 *  which `draftId` groups instead. */
export function queueSend({ clientMsgId, text, threadId, draftId }) {
  settled.delete(clientMsgId);
  entries.push({ kind: "send", clientMsgId, text, threadId, draftId, sent: false });
  save();
}

/** Queue a request to regenerate a failed reply. */
export function queueRetry(messageId) {
  entries.push({ kind: "retry", messageId });
  save();
}

/** Send what is waiting through `send(frame) → bool`. Messages of a new chat
 *  wait for the first one's ack: sending them without a thread id would
 *  start a second thread. */
export function flush(send) {
  const draftsAwaitingThread = new Set();
  let changed = false;
  for (let i = 0; i < entries.length; i += 1) {
    const entry = entries[i];
    if (entry.kind === "retry") {
      if (send({ type: "retry", message_id: entry.messageId })) {
        entries.splice(i, 1);
        i -= 1;
        changed = true;
      }
      continue;
    }
    if (!entry.threadId) {
      if (draftsAwaitingThread.has(entry.draftId)) continue;
      draftsAwaitingThread.add(entry.draftId);
    }
    if (entry.sent) continue;
    const frame = { type: "send", client_msg_id: entry.clientMsgId, text: entry.text };
    if (entry.threadId) frame.thread_id = entry.threadId;
    entry.sent = send(frame);
  }
  if (changed) save();
}

/** The connection dropped: whatever was sent on it may not have arrived, so
 *  it is sent again after reconnecting (same client ids, so the server will
 *  not double it). Remembers what was in flight for `dropInFlight`. */
export function connectionLost() {
  for (const entry of entries) {
    entry.inFlight = entry.sent;
    entry.sent = false;
  }
}

/** Remove the messages that were in flight when the connection dropped and
 *  return their client ids (the server refused a frame as too large;
 *  re-sending the same ones would loop). */
export function dropInFlight() {
  const dropped = [];
  for (let i = entries.length - 1; i >= 0; i -= 1) {
    const entry = entries[i];
    if (entry.kind !== "send" || !entry.inFlight) continue;
    entries.splice(i, 1);
    settled.add(entry.clientMsgId);
    dropped.push(entry.clientMsgId);
  }
  if (dropped.length) save();
  return dropped;
}

/** The server could not store message `clientMsgId` just now (its database
 *  was not answering: `unavailable`): it stays waiting, to be sent again by
 *  a later flush. False when it is not waiting. */
export function sendAgainLater(clientMsgId) {
  const entry = entries.find((e) => e.kind === "send" && e.clientMsgId === clientMsgId);
  if (entry) entry.sent = false;
  return Boolean(entry);
}

/** Take a message out (acknowledged, or refused by the server); returns its
 *  entry, or null when it was not waiting. */
export function remove(clientMsgId) {
  settled.add(clientMsgId);
  const i = entries.findIndex((e) => e.clientMsgId === clientMsgId);
  const entry = i >= 0 ? entries.splice(i, 1)[0] : null;
  save();
  return entry;
}

/** The first message of a new chat was acknowledged: the rest of that chat
 *  goes to the thread the server made. */
export function adoptThread(draftId, threadId) {
  for (const other of entries) {
    if (!other.threadId && other.draftId === draftId) other.threadId = threadId;
  }
  save();
}
