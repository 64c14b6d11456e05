-- Consistency (issue 11; numbered after it so parallel work cannot collide).

-- The outbox is relayed in insertion order. Two changes of one user are
-- serialised by the user's row lock, so `seq` orders their events the way
-- they happened (timestamps can tie).
ALTER TABLE outbox ADD COLUMN seq bigserial;
DROP INDEX outbox_unpublished_idx;
CREATE INDEX outbox_unpublished_seq_idx ON outbox (seq) WHERE published_at IS NULL;

-- The public profile: what `user.updated` carries. `profile_version` grows by
-- one with every change, and the event carries it, so a consumer can tell an
-- older event from a newer one whatever order they arrive in.
ALTER TABLE users
    ADD COLUMN profile_version bigint NOT NULL DEFAULT 1,
    ADD COLUMN time_zone       text,
    ADD COLUMN avatar_id       uuid;

-- Uploaded avatars, served by auth at /v1/auth/avatars/{id}. A new upload is
-- a new row (a new URL, so no cache ever shows the old picture under it).
CREATE TABLE avatars (
    id           uuid PRIMARY KEY,
    user_id      uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    content_type text        NOT NULL,
    bytes        bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX avatars_user_id_idx ON avatars (user_id);

-- A requested email change waits for the link sent to the new address.
-- Only SHA-256 of the link's secret is stored.
CREATE TABLE email_changes (
    token_hash bytea PRIMARY KEY,
    user_id    uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    new_email  text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE INDEX email_changes_user_id_idx ON email_changes (user_id);
