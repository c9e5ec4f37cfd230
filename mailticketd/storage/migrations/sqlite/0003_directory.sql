-- Staff administration of the directory: an audit log of every change made
-- through the staff CLI (who, when, what, before/after as JSON), and the note
-- that explains a temporary authorisation (e.g. "register extract of ...").

CREATE TABLE audit_log (
    id           INTEGER PRIMARY KEY,
    at           TEXT NOT NULL,
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL,
    subject      TEXT NOT NULL,
    before_state TEXT,
    after_state  TEXT
);
CREATE INDEX audit_log_subject ON audit_log(subject, id);

ALTER TABLE users ADD COLUMN authorisation_note TEXT;
CREATE INDEX vms_organisation ON vms(organisation_id);
