-- Export and deletion (issue 13; numbered after it so parallel work on other
-- migrations cannot collide).

-- Which model and provider wrote each reply, for the export (NULL for user
-- messages and for replies written before this migration).
ALTER TABLE messages ADD COLUMN model text, ADD COLUMN provider text;

-- Accounts that were deleted. A still-valid access token (or a late
-- `user.registered` event) of a deleted user must never re-create the
-- profile; Redis revocation entries may be lost, so the marker is durable and
-- lives here. It holds SHA-256 of the user id, not the id: the backend can
-- recognise the user but keeps nothing that names them.
CREATE TABLE deleted_users (
    user_hash  bytea PRIMARY KEY,
    deleted_at timestamptz NOT NULL DEFAULT now()
);
