-- The customer helpdesk on the web: server-side sessions (the token stored as its
-- sha256 only), failed log-ins for throttling, and the origin of an inbox row that
-- the web wrote (the logged-in person, the ticket answered, the VMs chosen): a
-- column no SMTP sender can set.

CREATE TABLE web_sessions (
    sha256     TEXT PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id),
    csrf       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    seen_at    TEXT NOT NULL
);
CREATE INDEX web_sessions_user ON web_sessions(user_id);

CREATE TABLE login_failures (
    id  INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    at  TEXT NOT NULL
);
CREATE INDEX login_failures_key ON login_failures(key, at);

ALTER TABLE inbox ADD COLUMN origin TEXT;

CREATE INDEX tickets_organisation_updated ON tickets(organisation_id, updated_at);
CREATE INDEX tickets_updated ON tickets(updated_at);
