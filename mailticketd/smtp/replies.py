"""Every SMTP reply the daemon gives, with its enhanced status code and a sentence for the sender."""

from __future__ import annotations

ACCEPTED = "250 2.0.0 Ok: queued as {inbox_id}"
RECIPIENT_OK = "250 2.1.5 Ok"
UNKNOWN_RECIPIENT = "550 5.1.1 <{address}>: no such mailbox here; this server only accepts mail for its support addresses"
BAD_RECIPIENT = "501 5.1.3 Bad recipient address syntax"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients; send the rest in another transaction"
TOO_BIG = "552 5.3.4 Message too big: the limit is {limit} bytes"
LINE_TOO_LONG = "500 5.5.2 Line too long: the limit is {limit} bytes"
TRY_LATER = "451 4.3.0 The message could not be stored right now; please try again later"
BACKLOG_FULL = "451 4.3.0 Too much mail is waiting to be processed; please try again later"
TOO_MANY_CONNECTIONS = "421 4.3.2 Too many connections; please try again later"
SHUTTING_DOWN = "421 4.3.2 The service is shutting down; please try again later"
