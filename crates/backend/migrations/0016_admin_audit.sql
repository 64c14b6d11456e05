-- The admin console's actions on what the backend owns (issue 16): a plan
-- changed by an admin, written in the same transaction as the change. Same
-- shape as auth's `admin_audit`; the console shows both. Deleting an account
-- blanks its id and email here.
CREATE TABLE admin_audit (
    id           uuid PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
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
