-- A mail being sent is leased first: until leased_until no one sends it again,
-- even when the write that marks it sent fails (read-only database, full disk).

ALTER TABLE outbox ADD COLUMN leased_until TEXT;

-- A mail with a secret (a verification link) is also stored without it; that copy
-- replaces the mail once it is sent or has failed.
ALTER TABLE outbox ADD COLUMN raw_after_send BLOB;
