-- The first schema: directory, tickets, articles, attachments, threading ids,
-- and the durable inbox and outbox queues.

CREATE TABLE organisations (
    id                 INTEGER PRIMARY KEY,
    name               TEXT NOT NULL UNIQUE COLLATE NOCASE,
    primary_contact_id INTEGER REFERENCES users(id),
    flags              TEXT NOT NULL DEFAULT '[]',
    created_at         TEXT NOT NULL
);

CREATE TABLE users (
    id                 INTEGER PRIMARY KEY,
    address            TEXT NOT NULL UNIQUE COLLATE NOCASE,
    name               TEXT NOT NULL DEFAULT '',
    organisation_id    INTEGER REFERENCES organisations(id),
    status             TEXT NOT NULL DEFAULT 'unverified'
                       CHECK (status IN ('unverified', 'active', 'inactive')),
    role               TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'manager')),
    authorised         INTEGER NOT NULL DEFAULT 0,
    authorised_until   TEXT,
    monitoring_contact INTEGER NOT NULL DEFAULT 0,
    language           TEXT,
    password_hash      TEXT,
    verified_at        TEXT,
    created_at         TEXT NOT NULL
);
CREATE INDEX users_organisation ON users(organisation_id);

CREATE TABLE operators (
    id         INTEGER PRIMARY KEY,
    address    TEXT NOT NULL UNIQUE COLLATE NOCASE,
    name       TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
);

CREATE TABLE vms (
    id              INTEGER PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE COLLATE NOCASE,
    organisation_id INTEGER NOT NULL REFERENCES organisations(id),
    created_at      TEXT NOT NULL
);

CREATE TABLE tickets (
    id              INTEGER PRIMARY KEY,
    number          INTEGER NOT NULL UNIQUE,
    subject         TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'new'
                    CHECK (status IN ('new', 'open', 'pending', 'closed')),
    organisation_id INTEGER REFERENCES organisations(id),
    requester_id    INTEGER REFERENCES users(id),
    assignee        TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    closed_at       TEXT
);
CREATE INDEX tickets_organisation ON tickets(organisation_id);

CREATE TABLE participants (
    ticket_id INTEGER NOT NULL REFERENCES tickets(id),
    user_id   INTEGER NOT NULL REFERENCES users(id),
    role      TEXT NOT NULL CHECK (role IN ('requester', 'cc')),
    added_at  TEXT NOT NULL,
    PRIMARY KEY (ticket_id, user_id)
);
CREATE INDEX participants_user ON participants(user_id);

CREATE TABLE articles (
    id             INTEGER PRIMARY KEY,
    ticket_id      INTEGER NOT NULL REFERENCES tickets(id),
    inbox_id       INTEGER REFERENCES inbox(id),
    author_id      INTEGER REFERENCES users(id),
    author_address TEXT NOT NULL,
    author_status  TEXT NOT NULL,
    kind           TEXT NOT NULL,
    message_id     TEXT,
    subject        TEXT NOT NULL,
    text           TEXT NOT NULL,
    visible_text   TEXT NOT NULL,
    html           TEXT,
    flags          TEXT NOT NULL DEFAULT '[]',
    created_at     TEXT NOT NULL
);
CREATE INDEX articles_ticket ON articles(ticket_id);
CREATE INDEX articles_message_id ON articles(message_id);

CREATE TABLE attachment_blobs (
    sha256  TEXT PRIMARY KEY,
    size    INTEGER NOT NULL,
    content BLOB NOT NULL
);

CREATE TABLE article_attachments (
    id           INTEGER PRIMARY KEY,
    article_id   INTEGER NOT NULL REFERENCES articles(id),
    sha256       TEXT NOT NULL REFERENCES attachment_blobs(sha256),
    name         TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size         INTEGER NOT NULL
);
CREATE INDEX article_attachments_article ON article_attachments(article_id);

-- Every Message-ID the daemon stored or sent, for threading by
-- In-Reply-To / References.
CREATE TABLE message_ids (
    message_id TEXT PRIMARY KEY,
    ticket_id  INTEGER NOT NULL REFERENCES tickets(id),
    article_id INTEGER REFERENCES articles(id),
    direction  TEXT NOT NULL CHECK (direction IN ('in', 'out')),
    created_at TEXT NOT NULL
);

CREATE TABLE ticket_vms (
    ticket_id INTEGER NOT NULL REFERENCES tickets(id),
    name      TEXT NOT NULL,
    vm_id     INTEGER REFERENCES vms(id),
    flags     TEXT NOT NULL DEFAULT '[]',
    added_at  TEXT NOT NULL,
    PRIMARY KEY (ticket_id, name)
);

CREATE TABLE inbox (
    id              INTEGER PRIMARY KEY,
    received_at     TEXT NOT NULL,
    peer            TEXT NOT NULL DEFAULT '',
    mail_from       TEXT NOT NULL,
    rcpt_tos        TEXT NOT NULL,
    message_id      TEXT,
    size            INTEGER NOT NULL,
    raw             BLOB NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'done', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    reason          TEXT,
    decision        TEXT,
    ticket_id       INTEGER REFERENCES tickets(id),
    processed_at    TEXT
);
CREATE INDEX inbox_pending ON inbox(status, id);

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    created_at      TEXT NOT NULL,
    ticket_id       INTEGER REFERENCES tickets(id),
    kind            TEXT NOT NULL,
    mail_from       TEXT NOT NULL,
    rcpt_to         TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    raw             BLOB NOT NULL,
    status          TEXT NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    sent_at         TEXT
);
CREATE INDEX outbox_queued ON outbox(status, next_attempt_at);
