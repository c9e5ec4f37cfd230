-- Several daemons on one database claim an inbox row before working on it: who
-- claimed it, and until when nobody else takes it (a daemon that died loses its
-- claims when the lease ends).  One daemon on SQLite never claims; the columns
-- keep the SQLite and PostgreSQL schemas alike.

ALTER TABLE inbox ADD COLUMN claimed_by TEXT;
ALTER TABLE inbox ADD COLUMN lease_until TEXT;
