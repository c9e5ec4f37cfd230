-- A mail's bytes move to a table of their own.  SQLite rebuilds a whole record on UPDATE: marking an
-- inbox row done or failed read and rewrote the mail with it, and a 25 MB mail cost twice its size in
-- memory each time.  Here the bytes are the last column of their row, so the SMTP side writes them with
-- zeroblob() and incremental blob I/O, and the inbox worker reads them in chunks, never whole.

CREATE TABLE inbox_raw (
    inbox_id INTEGER PRIMARY KEY REFERENCES inbox(id),
    raw      BLOB NOT NULL
);

INSERT INTO inbox_raw (inbox_id, raw) SELECT id, raw FROM inbox;

ALTER TABLE inbox DROP COLUMN raw;
