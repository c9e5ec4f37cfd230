"""The server side of STARTTLS: a TLS context from the configured certificate and key."""

from __future__ import annotations

import functools
import ssl
from pathlib import Path

from mailticketd.config import ConfigError, SmtpConfig


def server_context(config: SmtpConfig, source: str) -> ssl.SSLContext | None:
    """The context for ``[smtp] tls_certificate`` and ``tls_key``; None when they are not set.

    Read again only when a file changes (new sessions pick up a renewed certificate);
    raises ``ConfigError`` naming the key when the files cannot be used.
    """
    if config.tls_certificate is None or config.tls_key is None:
        return None
    try:
        stamp = (config.tls_certificate.stat().st_mtime_ns, config.tls_key.stat().st_mtime_ns)
        return _load(config.tls_certificate, config.tls_key, stamp)
    except (OSError, ssl.SSLError) as error:
        raise ConfigError(source, "[smtp] tls_certificate", f"cannot be used with tls_key: {error}") from error


@functools.lru_cache(maxsize=4)
def _load(certificate: Path, key: Path, stamp: tuple[int, int]) -> ssl.SSLContext:
    # A mail server does not ask its clients for certificates (RFC 3207 §4.1 leaves it to policy).
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)
    return context
