-- The admin console (issue 16; numbered after it so parallel work cannot collide).

-- An account's role. `role_granted_by` says why it is an admin: the first
-- account of the installation, or its email in CONFAB_ADMIN_EMAILS. Only a
-- role granted by the configuration is taken away when the email leaves it.
-- `disabled_at`: an administrator disabled the account; it cannot sign in
-- until it is enabled again.
ALTER TABLE users
    ADD COLUMN role text NOT NULL DEFAULT 'user'
        CONSTRAINT users_role_check CHECK (role IN ('user', 'admin')),
    ADD COLUMN role_granted_by text
        CONSTRAINT users_role_granted_by_check CHECK (role_granted_by IN ('first_account', 'config')),
    ADD COLUMN disabled_at timestamptz;

-- An installation that predates roles: its first account is the admin.
UPDATE users SET role = 'admin', role_granted_by = 'first_account'
WHERE id = (SELECT id FROM users ORDER BY created_at, id LIMIT 1);

ALTER TABLE sessions DROP CONSTRAINT sessions_revoked_reason_check;
ALTER TABLE sessions ADD CONSTRAINT sessions_revoked_reason_check CHECK (revoked_reason IN (
    'signed_out', 'signed_out_elsewhere', 'signed_out_everywhere',
    'refresh_token_reuse', 'password_change', 'account_deleted',
    'account_disabled', 'role_changed'));

-- Every admin action, written in the same transaction as the action. Who
-- and whom are kept by id and by the email they had then (an audit log
-- must read the same after a rename); deleting an account blanks both
-- wherever it appears. A NULL actor is the service itself (roles from
-- CONFAB_ADMIN_EMAILS applied at start).
CREATE TABLE admin_audit (
    id           uuid PRIMARY KEY,
    at           timestamptz NOT NULL,
    actor_id     uuid,
    actor_email  text,
    action       text        NOT NULL,
    target_id    uuid,
    target_email text,
    ip           text,
    request_id   text,
    detail       jsonb       NOT NULL DEFAULT '{}'
);
CREATE INDEX admin_audit_at_idx ON admin_audit (at DESC, id DESC);
CREATE INDEX admin_audit_target_idx ON admin_audit (target_id);
CREATE INDEX admin_audit_actor_idx ON admin_audit (actor_id);
