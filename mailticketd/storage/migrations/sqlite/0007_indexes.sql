-- Indexes for the queries of the mail path that read a whole table
-- (found by tests/test_query_plans.py), so that a mail costs the same with a
-- million tickets as with a thousand:
--  * the Message-IDs of a ticket's thread, for References of every outgoing mail;
--  * the automatic answers to one address lately (compared lower-cased);
--  * the recipients of an outgoing mail that bounced;
--  * the leases that a start ends (only leased rows are in this index).

CREATE INDEX message_ids_ticket ON message_ids(ticket_id, created_at);
CREATE INDEX outbox_recipient_lower ON outbox(lower(rcpt_to), created_at);
CREATE INDEX outbox_message_id ON outbox(message_id);
CREATE INDEX outbox_leased ON outbox(leased_until) WHERE leased_until IS NOT NULL;
