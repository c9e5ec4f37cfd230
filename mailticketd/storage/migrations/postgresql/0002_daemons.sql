-- Every daemon working on the database, with a heartbeat (SQLite's migration
-- 0010): `mailticketd status` lists them.  A daemon that stops cleanly sets
-- stopped_at; one unseen for long is shown as gone, and rows are forgotten
-- only a week after they were last seen.

CREATE TABLE daemons (
    owner      TEXT PRIMARY KEY,
    host       TEXT NOT NULL,
    pid        BIGINT NOT NULL,
    version    TEXT NOT NULL,
    started_at TEXT NOT NULL,
    last_seen  TEXT NOT NULL,
    stopped_at TEXT
);
CREATE INDEX daemons_last_seen ON daemons(last_seen);
