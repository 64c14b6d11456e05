-- Sessions a person can see and end (issue 7).
--
-- `handle` is what the session list and DELETE /v1/auth/sessions/{id} show:
-- a second random id, so the `sid` inside access tokens never leaves them
-- (a page that lists sessions hands out nothing a token could be matched or
-- forged with). `ip` is coarse on purpose (IPv4 /24, IPv6 /48): enough to
-- recognise "home" from "abroad", not a location. `revoked_reason` says why
-- a session ended, for the list and for the pages that were signed out.
ALTER TABLE sessions
    ADD COLUMN handle         uuid NOT NULL DEFAULT gen_random_uuid(),
    ADD COLUMN ip             text,
    ADD COLUMN revoked_reason text
        CONSTRAINT sessions_revoked_reason_check CHECK (revoked_reason IN (
            'signed_out', 'signed_out_elsewhere', 'signed_out_everywhere',
            'refresh_token_reuse', 'password_change', 'account_deleted'));
CREATE UNIQUE INDEX sessions_handle_key ON sessions (handle);
UPDATE sessions SET revoked_reason = 'signed_out' WHERE revoked_at IS NOT NULL;

-- Rotation without forking: when a token is rotated, its successor's secret
-- is derived from the presented secret and this per-row random key
-- (SHA-256 over both), so a retry of the same token inside the grace window
-- gets the *same* successor back instead of a second live chain. The key is
-- never sent anywhere; without the presented secret it derives nothing.
ALTER TABLE refresh_tokens ADD COLUMN successor_key bytea;
