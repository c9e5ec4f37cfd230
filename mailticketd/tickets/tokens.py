"""Reply tokens: ``support+<token>@domain`` binds a ticket and a recipient with an HMAC.

The token names the ticket number and carries a MAC over the number and the
recipient's address; the address itself is not in it.  A reply proves its
author received mail about that ticket only when the MAC verifies for the
author's own address, so a token forwarded to someone else, or used with a
changed number, proves nothing.  The first secret signs; every secret
verifies, so secrets can be rotated.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

_TOKEN = re.compile(r"^t(\d{1,12})\.([a-z2-7]{16})$")
SECRET_FILE = "reply-token.secret"


@dataclass(frozen=True)
class TokenSigner:
    secrets: tuple[bytes, ...]

    def token(self, number: int, recipient: str) -> str:
        return f"t{number}.{_mac(self.secrets[0], number, recipient)}"

    def address(self, support_address: str, number: int, recipient: str) -> str:
        """``support+TOKEN@domain`` for ``recipient`` on ticket ``number``."""
        local, _, domain = support_address.partition("@")
        return f"{local}+{self.token(number, recipient)}@{domain}"

    def verify(self, token: str, author: str) -> int | None:
        """The ticket number if ``token`` was made for ``author``, else None."""
        match = _TOKEN.match(token.strip().lower())
        if not match:
            return None
        number, mac = int(match.group(1)), match.group(2)
        for secret in self.secrets:
            if hmac.compare_digest(_mac(secret, number, author), mac):
                return number
        return None


def tokens_in(addresses: Iterable[str], local_addresses: Sequence[str]) -> list[str]:
    """The ``+`` parts of those ``addresses`` that are sub-addresses of our support addresses."""
    found = []
    for address in addresses:
        local, _, domain = address.strip().strip("<>").lower().partition("@")
        base, plus, token = local.partition("+")
        if plus and token and f"{base}@{domain}" in local_addresses:
            found.append(token)
    return list(dict.fromkeys(found))


def _mac(secret: bytes, number: int, recipient: str) -> str:
    digest = hmac.new(secret, f"{number}:{recipient.strip().lower()}".encode(), hashlib.sha256).digest()
    return base64.b32encode(digest[:10]).decode("ascii").lower()


def load_signer(configured: Sequence[str], state_directory: Path) -> TokenSigner:
    """Secrets from the config; with none, the one kept in the state directory (made at first start)."""
    if configured:
        return TokenSigner(tuple(secret.encode("utf-8") for secret in configured))
    path = state_directory / SECRET_FILE
    if not path.exists():
        state_directory.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first
        else:
            with os.fdopen(descriptor, "w", encoding="ascii") as handle:
                handle.write(secrets.token_urlsafe(32) + "\n")
    return TokenSigner((path.read_text(encoding="ascii").strip().encode("ascii"),))
