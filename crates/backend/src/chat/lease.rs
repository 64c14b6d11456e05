//! Reply leases. The instance writing a reply claims its `streaming` row
//! until `lease_until` (database time, one clock for every instance) and
//! renews the claim every third of the lease while it writes. Every instance
//! looks for expired claims twice per lease: a reply whose instance was
//! killed, hung or cut off from the database is marked failed with a retry
//! action within one to two leases, and its user's clients are told, so no
//! reply stays "streaming" and the one-good-reply rule (which refuses a retry
//! while a reply streams) cannot lock a question out.
//!
//! `complete` and `fail` only touch a row that is still streaming, so a
//! writer that was merely slow and finds its reply already failed by
//! another instance changes nothing and stays quiet.

use super::{Chat, ChatEvent};
use crate::{error::Error, store};
use confab_core::ids::MessageId;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Replies from before leases existed (no `lease_until`) count as
/// interrupted once they have not moved for this long.
const LEGACY_STREAMING_AFTER: Duration = Duration::from_secs(15 * 60);

impl Chat {
    /// How long a claim lasts without renewal.
    pub fn lease(&self) -> Duration {
        self.inner.lease
    }

    /// How often a writer renews its claim.
    pub(super) fn renew_every(&self) -> Duration {
        self.inner.lease / 3
    }

    /// Extend the claim on reply `id`. `Ok(false)`: the reply is no longer
    /// streaming (another instance failed it, or its thread was deleted) and
    /// its writer must stop.
    pub(super) async fn renew_lease(&self, id: MessageId) -> Result<bool, Error> {
        Ok(store::messages::renew_lease(&self.inner.db, id, self.inner.lease).await?)
    }

    /// Fail every reply whose claim expired, keeping what its live stream
    /// had of it (read first, written with the status in one statement),
    /// and tell its user's clients (an `error` frame with the reply's id and
    /// `retryable`). Returns how many this call failed.
    pub async fn fail_interrupted(&self) -> Result<usize, Error> {
        let expired =
            store::messages::expired_leases(&self.inner.db, LEGACY_STREAMING_AFTER).await?;
        let mut failed = 0;
        for r in &expired {
            let partial = match self.live_pieces(r.id).await {
                Ok(mut pieces) => {
                    pieces.sort_by_key(|(i, _)| *i);
                    pieces.dedup_by_key(|(i, _)| *i);
                    pieces.into_iter().map(|(_, t)| t).collect()
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not read an interrupted reply's pieces");
                    String::new()
                }
            };
            let taken = store::messages::fail_interrupted(
                &self.inner.db,
                r.id,
                &partial,
                LEGACY_STREAMING_AFTER,
            )
            .await?;
            if !taken {
                // Another instance took it, or its writer renewed meanwhile.
                continue;
            }
            failed += 1;
            tracing::warn!(message = %r.id, thread = %r.thread_id, "reply lease expired; marked interrupted");
            metrics::counter!("chat_replies_interrupted_total").increment(1);
            self.end_live(r.id);
            let event = ChatEvent::Failed {
                thread_id: r.thread_id,
                message_id: Some(r.id),
                code: store::messages::INTERRUPTED_CODE.into(),
                message: store::messages::INTERRUPTED_MESSAGE.into(),
                retryable: true,
                partial,
                request_id: None,
            };
            self.publish(r.user_id, &event).await;
        }
        Ok(failed)
    }

    /// Look for expired claims twice per lease until `stop`.
    pub async fn watch_leases(self, stop: CancellationToken) {
        let every = self.inner.lease / 2;
        loop {
            if let Err(e) = self.fail_interrupted().await {
                tracing::warn!(error = %e, "could not check reply leases");
            }
            tokio::select! {
                _ = confab_core::clock::sleep(every) => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}
