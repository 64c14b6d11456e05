-- A question gets at most one reply that is being written or complete, so
-- two retries racing each other cannot both produce an answer.
CREATE UNIQUE INDEX messages_one_good_reply ON messages (reply_to)
    WHERE reply_to IS NOT NULL AND status IN ('streaming', 'complete');
