-- The auth service's own database: accounts, signed-in devices (sessions),
-- their rotating refresh tokens, the keys that sign access tokens, and the
-- transactional outbox that carries facts to the other services.

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    -- Stored normalised (trimmed, lowercased) by the application; the unique
    -- index on lower(email) still guards against a writer that forgets.
    email         text        NOT NULL,
    display_name  text        NOT NULL,
    password_hash text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
-- The application maps a violation of this index (by name) to 409 email_taken.
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

-- One row per signed-in device. A session is never deleted when revoked, so
-- a replayed refresh token can still be recognised and answered precisely.
CREATE TABLE sessions (
    id           uuid PRIMARY KEY,
    user_id      uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz,
    user_agent   text
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);

-- Opaque refresh tokens, stored only as SHA-256 of the secret. Each use
-- marks the row used and links its successor (rotation); a second use of a
-- used row is what reuse detection looks for.
CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY,
    session_id  uuid        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    token_hash  bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    replaced_by uuid REFERENCES refresh_tokens (id) ON DELETE SET NULL,
    CONSTRAINT refresh_tokens_token_hash_key UNIQUE (token_hash)
);
CREATE INDEX refresh_tokens_session_id_idx ON refresh_tokens (session_id);

-- Ed25519 keys that sign access tokens. `active` marks the one key new tokens
-- are signed with; every key not yet retired stays in the JWKS so tokens
-- signed before a rotation keep verifying until they expire.
CREATE TABLE signing_keys (
    kid          text PRIMARY KEY,
    private_pkcs8 bytea       NOT NULL,
    public_key   bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    active       boolean     NOT NULL DEFAULT false,
    retired_at   timestamptz
);
-- At most one active key, whatever the application does.
CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys ((true)) WHERE active;

-- Transactional outbox: events are inserted in the same transaction as the
-- change they describe and relayed to the Redis events stream afterwards.
CREATE TABLE outbox (
    id           uuid PRIMARY KEY,
    type         text        NOT NULL,
    payload      jsonb       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished_idx ON outbox (created_at, id) WHERE published_at IS NULL;
