-- Fast and unbreakable (issue 15): a new question, its reply's row and the
-- reply's context in one round trip. The question takes the thread's next
-- sequence number and the reply the one after (one update of the thread's
-- row, whose lock serialises writers of one thread), the question is
-- inserted (a resend raises the unique violation `messages_client_msg_id`,
-- which undoes everything), then the `streaming` reply holding its lease
-- (a new question has no earlier attempts to supersede), then the context
-- is read: the thread's complete, current messages up to the question,
-- newest first, which the question itself heads. One function call is one
-- statement: atomic, committed before it answers. Rows, in order: the
-- question, the reply, the context (the question again first). No rows
-- when the thread is not the user's (or was deleted).
CREATE FUNCTION send_question(
    p_id            uuid,
    p_thread        uuid,
    p_user          uuid,
    p_content       text,
    p_client_msg_id text,
    p_reply_id      uuid,
    p_model         text,
    p_provider      text,
    p_request_id    uuid,
    p_lease_secs    double precision,
    p_context_limit bigint
) RETURNS SETOF messages
LANGUAGE plpgsql AS $$
DECLARE
    reply_seq bigint;
BEGIN
    UPDATE threads SET last_seq = last_seq + 2, updated_at = now()
    WHERE id = p_thread AND user_id = p_user
    RETURNING last_seq INTO reply_seq;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY
    INSERT INTO messages (id, thread_id, user_id, role, content, status, seq, client_msg_id)
    VALUES (p_id, p_thread, p_user, 'user', p_content, 'complete', reply_seq - 1, p_client_msg_id)
    RETURNING *;
    RETURN QUERY
    INSERT INTO messages (id, thread_id, user_id, role, content, status, seq, reply_to,
                          model, provider, request_id, lease_until)
    VALUES (p_reply_id, p_thread, p_user, 'assistant', '', 'streaming', reply_seq, p_id,
            p_model, p_provider, p_request_id, now() + make_interval(secs => p_lease_secs))
    RETURNING *;
    RETURN QUERY
    SELECT * FROM messages
    WHERE thread_id = p_thread AND status = 'complete' AND current AND seq <= reply_seq - 1
    ORDER BY seq DESC LIMIT p_context_limit;
END
$$;
