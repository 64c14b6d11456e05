-- Fast and unbreakable (issue 15): a reply row starts in one round trip.
-- Starting a reply is three writes that must happen together and in this
-- order — take the thread's next sequence number (the row lock serialises
-- writers of one thread), make the question's earlier attempts no longer
-- current (the unique index `messages_one_current_reply` is checked row by
-- row, so before the insert), insert the `streaming` row holding its lease —
-- and a single statement cannot order its data-modifying parts. As one
-- function call they are one statement: atomic, one round trip instead of
-- five. No rows when the thread is gone (deleted meanwhile).
CREATE FUNCTION start_reply(
    p_id         uuid,
    p_thread     uuid,
    p_user       uuid,
    p_question   uuid,
    p_model      text,
    p_provider   text,
    p_request_id uuid,
    p_lease_secs double precision
) RETURNS SETOF messages
LANGUAGE plpgsql AS $$
DECLARE
    next_seq bigint;
BEGIN
    UPDATE threads SET last_seq = last_seq + 1, updated_at = now()
    WHERE id = p_thread
    RETURNING last_seq INTO next_seq;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    UPDATE messages SET current = false WHERE reply_to = p_question AND current;
    RETURN QUERY
    INSERT INTO messages (id, thread_id, user_id, role, content, status, seq, reply_to,
                          model, provider, request_id, lease_until)
    VALUES (p_id, p_thread, p_user, 'assistant', '', 'streaming', next_seq, p_question,
            p_model, p_provider, p_request_id, now() + make_interval(secs => p_lease_secs))
    RETURNING *;
END
$$;
