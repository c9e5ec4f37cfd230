-- The automatic-answer limit counts a recipient's recent mails by lower(rcpt_to) for every new ticket:
-- without this index that was a scan of the whole outbox, slower with every mail ever sent.
-- (0007 is left to the benchmark work of issue 13.)
CREATE INDEX outbox_recipient_lower ON outbox(lower(rcpt_to), created_at);
