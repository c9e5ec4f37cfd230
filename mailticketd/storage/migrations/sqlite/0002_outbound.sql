-- Outbound mail: closed tickets that a later ticket follows, delivery failures
-- of users' addresses, and verification tokens (stored as sha256 only).

ALTER TABLE tickets ADD COLUMN follows_ticket_id INTEGER REFERENCES tickets(id);
ALTER TABLE users ADD COLUMN delivery_failed_at TEXT;
ALTER TABLE users ADD COLUMN delivery_failure TEXT;

CREATE TABLE verification_tokens (
    id         INTEGER PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id),
    sha256     TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at    TEXT
);
CREATE INDEX verification_tokens_user ON verification_tokens(user_id);
CREATE INDEX outbox_recipient ON outbox(rcpt_to, created_at);
ALTER TABLE tickets ADD COLUMN thread_index TEXT;
