-- A mail being sent is leased first: until leased_until no one sends it again,
-- even when the write that marks it sent fails (read-only database, full disk).

ALTER TABLE outbox ADD COLUMN leased_until TEXT;
