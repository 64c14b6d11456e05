-- Reply leases (issue 8; numbered after it so parallel work on other
-- migrations cannot collide). The instance writing a reply holds a lease on
-- its `streaming` row and renews it while it writes; `updated_at` is not
-- touched by a live stream, so it cannot tell a live reply from one whose
-- instance died. Any instance that finds a lease expired marks the reply
-- failed (retryable) within seconds. NULL for rows written before leases:
-- those fall back to an old `updated_at`.
ALTER TABLE messages ADD COLUMN lease_until timestamptz;
CREATE INDEX messages_streaming_lease ON messages (lease_until) WHERE status = 'streaming';
