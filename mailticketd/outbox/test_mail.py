"""``mailticketd send-test``: one mail straight through the configured transport, bypassing the queue."""

from __future__ import annotations

from mailticketd.clock import utc_now
from mailticketd.config import Config
from mailticketd.mail.compose import compose, new_message_id
from mailticketd.mail.templates import Templates
from mailticketd.outbox.transports import make_transport


async def send_test_mail(config: Config, address: str) -> str:
    """Send the ``test`` template to ``address``; returns the Message-ID or raises the transport's failure."""
    mail = config.mail
    now = utc_now()
    rendered = Templates(mail.templates).render("test", mail.default_language, recipient=address,
                                                transport=config.outbound.transport, sent_at=now.isoformat())
    message_id = new_message_id(mail.support_address.partition("@")[2])
    outgoing = compose(sender_name=mail.from_name, sender=mail.support_address, to=address,
                       subject=rendered.subject, body=rendered.body, now=now, message_id=message_id,
                       loop=mail.support_address)
    await make_transport(config.outbound).send(mail.support_address, address, outgoing.raw)
    return message_id
