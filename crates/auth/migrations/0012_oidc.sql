-- Sign-in through OpenID Connect providers ("Log in with Google" and any
-- generic issuer).

-- An account made through a provider has no password until its owner sets
-- one; password log-in then fails like a wrong password.
ALTER TABLE users ALTER COLUMN password_hash DROP NOT NULL;

-- An external identity: keyed by the provider's issuer and its subject,
-- never by the email (emails change and are reassigned; iss+sub is the only
-- stable identifier OpenID Connect promises, Core §5.7).
CREATE TABLE external_identities (
    id            uuid PRIMARY KEY,
    user_id       uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The configured provider id ("google", "corp"), for display and unlink.
    provider      text        NOT NULL,
    issuer        text        NOT NULL,
    subject       text        NOT NULL,
    -- What the provider said last time, shown in settings.
    email         text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT external_identities_issuer_subject_key UNIQUE (issuer, subject)
);
CREATE INDEX external_identities_user_id_idx ON external_identities (user_id);

-- One row per started sign-in: the `state` the provider echoes back (stored
-- hashed), the browser it is bound to (hash of an httpOnly cookie), the
-- nonce and the PKCE verifier. Consumed once (`used_at`); kept a while after
-- so a replay can be told apart from garbage in the logs.
CREATE TABLE oidc_flows (
    state_hash    bytea PRIMARY KEY,
    browser_hash  bytea       NOT NULL,
    provider      text        NOT NULL,
    nonce         text        NOT NULL,
    pkce_verifier text        NOT NULL,
    -- Set when a signed-in user links a provider from settings.
    link_user_id  uuid REFERENCES users (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    used_at       timestamptz
);
CREATE INDEX oidc_flows_expires_at_idx ON oidc_flows (expires_at);

-- A provider identity waiting for its owner to prove the existing account
-- with the same (verified) email by entering that account's password.
CREATE TABLE oidc_pending_links (
    token_hash    bytea PRIMARY KEY,
    browser_hash  bytea       NOT NULL,
    user_id       uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider      text        NOT NULL,
    issuer        text        NOT NULL,
    subject       text        NOT NULL,
    email         text,
    attempts      integer     NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL
);
