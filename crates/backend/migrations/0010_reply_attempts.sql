-- Agent errors (issue 10; numbered after it so parallel work on other
-- migrations cannot collide): every reply is an attempt at answering its
-- question, and a question may have many — failed ones, stopped ones, and
-- good ones the user chose to regenerate. All are kept; `current` marks the
-- one the conversation shows and the model sees as context.

-- A reply the user stopped keeps what it had written, marked as stopped.
ALTER TABLE messages DROP CONSTRAINT messages_status_check;
ALTER TABLE messages ADD CONSTRAINT messages_status_check
    CHECK (status IN ('complete', 'streaming', 'failed', 'stopped'));

ALTER TABLE messages ADD COLUMN current boolean NOT NULL DEFAULT true;
-- The id of the generation that wrote a reply: in the failure's log line,
-- on the error the user sees, and here, so the three can be matched.
ALTER TABLE messages ADD COLUMN request_id uuid;

-- Until now the newest attempt at a question was the one shown.
UPDATE messages m SET current = false
WHERE m.reply_to IS NOT NULL
  AND EXISTS (SELECT 1 FROM messages n WHERE n.reply_to = m.reply_to AND n.seq > m.seq);

-- "One good reply per question" gives way to regeneration. What stays
-- unique: one attempt being written per question (two racing Retry clicks
-- cannot both start one), and one current attempt per question.
DROP INDEX messages_one_good_reply;
CREATE UNIQUE INDEX messages_one_attempt_streaming ON messages (reply_to)
    WHERE reply_to IS NOT NULL AND status = 'streaming';
CREATE UNIQUE INDEX messages_one_current_reply ON messages (reply_to)
    WHERE reply_to IS NOT NULL AND current;
