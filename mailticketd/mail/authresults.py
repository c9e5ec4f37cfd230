"""Read our own MTA's ``Authentication-Results`` verdict, and nobody else's.

Only the topmost header counts, and only when its authserv-id is the one
configured for our MTA (which must strip incoming copies): a forged header
parses just like the real one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import authres

from mailticketd.mail.parse import IncomingMail


_POLICY = re.compile(r"\b(?:p|policy\.(?:published-domain-policy|dmarc))=(none|quarantine|reject)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Verdict:
    dmarc: str | None  # pass | fail | none | … as the MTA wrote it
    dkim_domains: tuple[str, ...]  # header.d of each dkim=pass
    dmarc_from: str | None  # header.from of the dmarc result
    dmarc_policy: str | None = None  # the domain's published policy (none | quarantine | reject), if the MTA says

    @property
    def forged(self) -> bool:
        """DMARC failed for a domain that asks for failures to be refused or quarantined (or does not say)."""
        return self.dmarc == "fail" and self.dmarc_policy != "none"

    def dmarc_passed_for(self, address: str) -> bool:
        """True when DMARC passed for the domain of ``address``."""
        domain = address.rpartition("@")[2].lower()
        return self.dmarc == "pass" and (self.dmarc_from or "").lower() == domain


def verdict(mail: IncomingMail, authserv_id: str) -> Verdict | None:
    """Our MTA's verdict on ``mail``, or None when there is none to trust."""
    if not authserv_id:
        return None
    values = mail.headers.get("authentication-results", ())
    if not values:
        return None
    try:
        header = authres.AuthenticationResultsHeader.parse(f"Authentication-Results: {values[0]}")
    except Exception:  # the library raises its own and plain errors on junk; junk is no verdict
        return None
    if (header.authserv_id or "").lower() != authserv_id.lower():
        return None
    dmarc, dmarc_from, dkim = None, None, []
    for result in header.results:
        properties = {f"{p.type}.{p.name}".lower(): str(p.value) for p in result.properties}
        if result.method == "dmarc" and dmarc is None:
            dmarc, dmarc_from = str(result.result).lower(), properties.get("header.from")
        elif result.method == "dkim" and str(result.result).lower() == "pass":
            dkim.append(properties.get("header.d", "").lower())
    policy = _POLICY.search(values[0])
    return Verdict(dmarc=dmarc, dkim_domains=tuple(dkim), dmarc_from=dmarc_from,
                   dmarc_policy=policy.group(1).lower() if policy else None)
