-- Consistency (issue 11; numbered after it so parallel work cannot collide).

-- The backend's own transactional outbox (thread.deleted, plan.changed, …),
-- relayed by the same code as auth's (confab_core::outbox).
CREATE TABLE outbox (
    id           uuid PRIMARY KEY,
    seq          bigserial,
    type         text        NOT NULL,
    payload      jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished_seq_idx ON outbox (seq) WHERE published_at IS NULL;

-- The profile as auth last announced it. `version` is auth's profile
-- version of the newest event applied (0: created from token claims, before
-- any event): an event no newer than it changes nothing.
ALTER TABLE profiles
    ADD COLUMN version    bigint NOT NULL DEFAULT 0,
    ADD COLUMN avatar_url text,
    ADD COLUMN time_zone  text,
    -- Auth bounds display names far below this; a row beyond it is a bug the
    -- consumer should refuse loudly (the event goes to the dead letters).
    ADD CONSTRAINT profiles_display_name_length CHECK (char_length(display_name) <= 200);

-- The default workspace is named after its owner ("Ada's workspace") until
-- the owner renames it; then a new display name leaves it alone.
ALTER TABLE workspaces ADD COLUMN custom_name boolean NOT NULL DEFAULT false;
