-- The provider's rules, whole: the manager role goes with the authorisation,
-- monitoring contacts have a phone number, and an audit entry can name the
-- ticket and requester a change was made for (and whether an operator
-- overrode the rule that the requester be authorised).
--
-- Existing databases are brought in line here: an authorised contact who is
-- no manager becomes one, a manager who is no authorised contact (or has
-- left) becomes a normal user.  Every user changed gets an audit entry by
-- the actor "migration 0006", so `mailticketd audit` reports what changed.

ALTER TABLE users ADD COLUMN phone TEXT NOT NULL DEFAULT '';
ALTER TABLE audit_log ADD COLUMN request TEXT;

CREATE TEMP TABLE rules_0006 AS
SELECT u.id AS id,
       CASE WHEN u.authorised = 1 AND u.status != 'inactive' AND u.organisation_id IS NOT NULL
            THEN 'manager' ELSE 'user' END AS role
FROM users u;

INSERT INTO audit_log (at, actor, action, subject, before_state, after_state)
SELECT strftime('%Y-%m-%dT%H:%M:%f000+00:00', 'now'), 'migration 0006', 'user.role', u.address,
       json_object('address', u.address, 'organisation', o.name, 'status', u.status, 'role', u.role,
                   'authorised', json(CASE WHEN u.authorised = 1 THEN 'true' ELSE 'false' END),
                   'authorised_until', u.authorised_until, 'authorisation_note', u.authorisation_note,
                   'monitoring_contact', json(CASE WHEN u.monitoring_contact = 1 THEN 'true' ELSE 'false' END),
                   'language', u.language),
       json_object('address', u.address, 'organisation', o.name, 'status', u.status, 'role', r.role,
                   'authorised', json(CASE WHEN u.authorised = 1 THEN 'true' ELSE 'false' END),
                   'authorised_until', u.authorised_until, 'authorisation_note', u.authorisation_note,
                   'monitoring_contact', json(CASE WHEN u.monitoring_contact = 1 THEN 'true' ELSE 'false' END),
                   'language', u.language)
FROM users u JOIN rules_0006 r ON r.id = u.id LEFT JOIN organisations o ON o.id = u.organisation_id
WHERE u.role != r.role
ORDER BY u.address;

UPDATE users SET role = (SELECT r.role FROM rules_0006 r WHERE r.id = users.id)
WHERE role != (SELECT r.role FROM rules_0006 r WHERE r.id = users.id);

DROP TABLE rules_0006;
