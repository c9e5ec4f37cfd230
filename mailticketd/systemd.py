"""Tell systemd how the service is doing (``Type=notify``): ten lines over a unix datagram socket."""

from __future__ import annotations

import os
import socket


class NotifyError(OSError):
    """``$NOTIFY_SOCKET`` is set but does not take the message."""


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``READY=1``) to ``$NOTIFY_SOCKET``; False when not run by systemd.

    Raises NotifyError when the socket is named but cannot be reached: at start-up that is a
    failed start (systemd would wait for READY=1 in vain).
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    target = "\0" + address[1:] if address.startswith("@") else address  # "@": abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(target)
            sock.sendall(state.encode("utf-8"))
    except OSError as error:
        raise NotifyError(f"cannot notify systemd at NOTIFY_SOCKET={address}: {error.strerror or error}") from error
    return True
