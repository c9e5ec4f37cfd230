-- The health report asks when the last mail left: with this index that is one look-up,
-- not a pass over every mail ever sent (tests/test_query_plans.py no longer lists exceptions).

CREATE INDEX outbox_sent_at ON outbox(sent_at);
