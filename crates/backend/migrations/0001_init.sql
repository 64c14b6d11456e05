-- The backend's own database: profiles, workspaces, threads, messages, and
-- the ids of cross-service events already applied (idempotent consumer).

CREATE TABLE profiles (
    user_id      uuid PRIMARY KEY,
    email        text NOT NULL,
    display_name text NOT NULL,
    plan         text NOT NULL DEFAULT 'free',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE workspaces (
    id         uuid PRIMARY KEY,
    owner_id   uuid NOT NULL REFERENCES profiles (user_id) ON DELETE CASCADE,
    name       text NOT NULL,
    is_default boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);
-- One default workspace per user, so concurrent first requests cannot create two.
CREATE UNIQUE INDEX workspaces_one_default ON workspaces (owner_id) WHERE is_default;

CREATE TABLE threads (
    id           uuid PRIMARY KEY,
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id      uuid NOT NULL REFERENCES profiles (user_id) ON DELETE CASCADE,
    title        text NOT NULL,
    -- The last sequence number handed out in this thread; bumped under the
    -- row lock, so numbers are gap-free and strictly increasing.
    last_seq     bigint NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX threads_by_user_recent ON threads (user_id, updated_at DESC);

CREATE TABLE messages (
    id            uuid PRIMARY KEY,
    thread_id     uuid NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
    user_id       uuid NOT NULL REFERENCES profiles (user_id) ON DELETE CASCADE,
    role          text NOT NULL CHECK (role IN ('user', 'assistant')),
    content       text NOT NULL,
    status        text NOT NULL CHECK (status IN ('complete', 'streaming', 'failed')),
    seq           bigint NOT NULL,
    client_msg_id text,
    reply_to      uuid REFERENCES messages (id) ON DELETE CASCADE,
    error_code    text,
    error_message text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT messages_thread_seq UNIQUE (thread_id, seq)
);
-- A resent message (same client id) finds the first one instead of doubling.
CREATE UNIQUE INDEX messages_client_msg_id ON messages (user_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;

CREATE TABLE processed_events (
    event_id     uuid PRIMARY KEY,
    event_type   text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);
