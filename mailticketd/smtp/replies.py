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
TOO_MANY_FROM_CLIENT = "421 4.7.0 Too many connections from your address; please try again later"
IDLE_TIMEOUT = "421 4.4.2 Idle for too long; closing the connection"
SESSION_TOO_LONG = "421 4.4.2 Session too long; please connect again to send more"
TOO_MANY_IDLE_COMMANDS = "421 4.7.0 Too many commands without a mail; closing the connection"
MUST_STARTTLS = "530 5.7.0 Must issue a STARTTLS command first"
SENDER_OK = "250 2.1.0 Ok"
BAD_SENDER = "501 5.1.7 Bad sender address syntax"

# aiosmtpd's own replies, which carry no enhanced status code (RFC 3463), by how they begin.
_AIOSMTPD = (
    ("500 Command line too long", "500 5.5.2 Command line too long: a command line may have 512 bytes"),
    ("500 Error: bad syntax", "500 5.5.2 Syntax error: an empty or unreadable command line"),
    ("500 Error: command ", "500 5.5.1 Unknown command {rest}; this server knows the commands of RFC 5321"),
    ("500 Error: strict ASCII mode", "500 5.5.2 Syntax error: only ASCII is accepted here"),
    ("501 Syntax: ", "501 5.5.4 Syntax: {rest}"),
    ("501 Error: ", "501 5.5.4 {rest}"),
    ("501 Not enough value", "501 5.5.4 Not enough arguments"),
    ("501 Too many values", "501 5.5.4 Too many arguments"),
    ("502 ", "502 5.5.1 {rest}"),
    ("503 Error: ", "503 5.5.1 Bad sequence of commands: {rest}"),
    ("503 ", "503 5.5.1 {rest}"),
    ("454 TLS not available", "454 4.7.0 TLS not available right now; please try again later"),
    ("220 Ready to start TLS", "220 2.0.0 Ready to start TLS"),
    ("221 Bye", "221 2.0.0 Bye"),
    ("250 OK", "250 2.0.0 Ok"),
    ("252 ", "252 2.0.0 {rest}"),
)


def enhanced(text: str) -> str:
    """``text`` with an enhanced status code where aiosmtpd gives a bare one; ours pass unchanged."""
    for start, reply in _AIOSMTPD:
        if text.startswith(start):
            rest = text[len(start):].strip().removesuffix(" not recognized") or text[4:].strip()
            return reply.format(rest=rest)
    return text
