"""Values that are fine for trying the desk out and wrong for a real one: what ``check-config`` warns about."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from mailticketd.config import Config

_LOCAL_DOMAINS = ("localhost", "localdomain", "local", "test", "example", "invalid")


def production_warnings(config: Config) -> list[tuple[str, str]]:
    """(key, problem) for every development value in ``config``; empty for a config ready for production."""
    found: list[tuple[str, str]] = []
    for address in config.mail.addresses:
        if _is_local_domain(address.rpartition("@")[2]):
            found.append(("[mail] addresses", f"{address} cannot receive mail from outside"))
    if _is_local_domain(config.smtp.hostname):
        found.append(("[smtp] hostname", f"{config.smtp.hostname!r} is not the host's public name"))
    url = urlsplit(config.http.base_url)
    if _is_loopback(url.hostname or ""):
        found.append(("[http] base_url", f"{config.http.base_url} is a loopback address: links in mails "
                                          "would not open for customers"))
    elif url.scheme != "https":
        found.append(("[http] base_url", f"{config.http.base_url} is not https: passwords would cross the "
                                          "network in clear"))
    if not config.operators.addresses:
        found.append(("[operators] addresses", "no operators: nobody is told about new tickets"))
    if config.outbound.transport == "maildir":
        found.append(("[outbound] transport", f'"maildir" keeps every outgoing mail in {config.outbound.maildir}; '
                                              'use "smtp" with a relay'))
    return found


def _is_local_domain(name: str) -> bool:
    name = name.lower().rstrip(".")
    return "." not in name or name.rpartition(".")[2] in _LOCAL_DOMAINS or _is_loopback(name)


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
