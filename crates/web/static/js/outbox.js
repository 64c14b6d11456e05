// The outbox: what the user sent that the server has not acknowledged yet,
// and retries not sent yet, in order.
//
// Every message carries a client-generated id and stays here until its
// `ack`; after a reconnect everything is sent again (the server deduplicates
// by id). No DOM, no socket: callers pass the send function in.

const entries = [];

/** Queue a message. `threadId` is null for the first messages of a new chat,
 *  which `draftId` groups instead. */
export function queueSend({ clientMsgId, text, threadId, draftId }) {
  entries.push({ kind: "send", clientMsgId, text, threadId, draftId, sent: false });
}

/** Queue a request to regenerate a failed reply. */
export function queueRetry(messageId) {
  entries.push({ kind: "retry", messageId });
}

/** Send what is waiting through `send(frame) → bool`. Messages of a new chat
 *  wait for the first one's ack: sending them without a thread id would
 *  start a second thread. */
export function flush(send) {
  const draftsAwaitingThread = new Set();
  for (let i = 0; i < entries.length; i += 1) {
    const entry = entries[i];
    if (entry.kind === "retry") {
      if (send({ type: "retry", message_id: entry.messageId })) {
        entries.splice(i, 1);
        i -= 1;
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
    dropped.push(entry.clientMsgId);
  }
  return dropped;
}

/** Take a message out (acknowledged, or refused by the server); returns its
 *  entry, or null when it was not waiting. */
export function remove(clientMsgId) {
  const i = entries.findIndex((e) => e.clientMsgId === clientMsgId);
  return i >= 0 ? entries.splice(i, 1)[0] : null;
}

/** The first message of a new chat was acknowledged: the rest of that chat
 *  goes to the thread the server made. */
export function adoptThread(draftId, threadId) {
  for (const other of entries) {
    if (!other.threadId && other.draftId === draftId) other.threadId = threadId;
  }
}
