"""Read our own MTA's ``Authentication-Results`` verdict, and nobody else's.

Only the topmost header whose authserv-id is the one configured for our MTA
counts (RFC 8601 §5): our MTA adds its header above everything the sender
wrote, and a forged header parses just like the real one.  The MTA must
strip incoming copies of its id (``docs/mta.md``); when a mail still carries
more than one, the MTA does not, and a "pass" proves nothing (a "fail"
still counts).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import authres
import structlog

from mailticketd.mail.parse import IncomingMail


log = structlog.get_logger("mailticketd.mail")

# What an operator notice says about the sender (``sender_check``).
FORGED = "forged"  # our MTA found DMARC failing: the sender is probably forged
VERIFIED = "verified"  # DMARC passed for the author's own domain
UNVERIFIED = "unverified"  # no verdict of our MTA, or none that vouches for the author

# Real headers are a few hundred bytes, a busy one a few KB.
_LONGEST = 16_384

_POLICY = re.compile(r"\b(?:p|policy\.(?:published-domain-policy|dmarc))=(none|quarantine|reject)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Verdict:
    dmarc: str | None  # pass | fail | none | … as the MTA wrote it
    dkim_domains: tuple[str, ...]  # header.d of each dkim=pass
    dmarc_from: str | None  # header.from of the dmarc result
    dmarc_policy: str | None = None  # the domain's published policy (none | quarantine | reject), if the MTA says
    copies: int = 1  # headers of our authserv-id in the mail; more than one: the MTA does not strip them

    @property
    def forged(self) -> bool:
        """DMARC failed for a domain that asks for failures to be refused or quarantined (or does not say)."""
        return self.dmarc == "fail" and self.dmarc_policy != "none"

    def dmarc_passed_for(self, address: str) -> bool:
        """True when DMARC passed for the domain of ``address`` and no copy of our header could be forged."""
        domain = address.rpartition("@")[2].lower()
        return self.copies == 1 and self.dmarc == "pass" and (self.dmarc_from or "").lower() == domain


def verdict(mail: IncomingMail, authserv_id: str) -> Verdict | None:
    """Our MTA's verdict on ``mail`` (its topmost header of ``authserv_id``), or None when there is none."""
    if not authserv_id:
        return None
    # A cheap look at the id first: a mail may carry thousands of headers, parsing runs on the event loop.
    # The id must come first (no comment before it), as every MTA writes it and docs/mta.md strips it.
    starts = re.compile(rf"\s*{re.escape(authserv_id)}(?=[\s;(]|$)", re.IGNORECASE)
    ours = [value for value in mail.headers.get("authentication-results", ()) if starts.match(value)]
    if not ours:
        return None
    if len(ours) > 1:
        log.warning("authres.unstripped_copies", authserv_id=authserv_id, copies=len(ours))
    header = _parse(ours[0])
    if header is None or (header.authserv_id or "").lower() != authserv_id.lower():
        return None
    dmarc, dmarc_from, dkim = None, None, []
    for result in header.results:
        properties = {f"{p.type}.{p.name}".lower(): str(p.value) for p in result.properties}
        if result.method == "dmarc" and dmarc is None:
            dmarc, dmarc_from = str(result.result).lower(), properties.get("header.from")
        elif result.method == "dkim" and str(result.result).lower() == "pass":
            dkim.append(properties.get("header.d", "").lower())
    policy = _POLICY.search(ours[0])
    return Verdict(dmarc=dmarc, dkim_domains=tuple(dkim), dmarc_from=dmarc_from,
                   dmarc_policy=policy.group(1).lower() if policy else None, copies=len(ours))


def sender_check(found: Verdict | None, author: str | None) -> str:
    """What our MTA says of the author: ``FORGED`` (DMARC failed), ``VERIFIED`` or ``UNVERIFIED``."""
    if found is not None and found.dmarc == "fail":
        return FORGED
    if found is not None and author and found.dmarc_passed_for(author):
        return VERIFIED
    return UNVERIFIED


def _parse(value: str) -> authres.AuthenticationResultsHeader | None:
    if len(value) > _LONGEST:
        return None  # no MTA writes that much; parsing it would hold up the event loop
    try:
        return authres.AuthenticationResultsHeader.parse(f"Authentication-Results: {value}")
    except Exception:  # the library raises its own and plain errors on junk; junk is no verdict
        return None
