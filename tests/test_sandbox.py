"""The daemon under the unit file's sandbox: a read-only system, a private /tmp, no new privileges, no capabilities.

systemd is not PID 1 here, so the sandbox is built by hand the way the unit
asks for it (ProtectSystem=strict with the state directory writable,
PrivateTmp, NoNewPrivileges, an empty CapabilityBoundingSet) with unshare,
mount and setpriv.  The system-call filter, RestrictAddressFamilies and
MemoryDenyWriteExecute need systemd's seccomp and are not reproduced.
"""

from __future__ import annotations

import os
import shutil
import smtplib
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers import SUPPORT, free_port, make_mail
from tests.process import ROOT, wait_for_banner

SCRIPT = """
set -e
mount --bind {state} {state}
mkdir -p {state}/code && mount --bind {root} {state}/code
mount -o remount,bind,ro /
mount -t tmpfs -o size=16m,mode=1777 tmpfs /tmp
case {root} in /tmp/*) mkdir -p {root} && mount --bind {state}/code {root} ;; esac  # a checkout under /tmp
if touch /etc/mailticketd-sandbox-probe 2>/dev/null; then echo "the system is writable" >&2; exit 97; fi
exec setpriv --no-new-privs --bounding-set=-all --inh-caps=-all \\
    {python} -m mailticketd --config {state}/mailticketd.toml serve
"""


def test_daemon_works_inside_the_units_sandbox(tmp_path: Path) -> None:
    """Under a read-only system with only its state directory writable, without capabilities, a mail becomes a ticket and its answers land in the maildir."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("setpriv"):
        pytest.skip("building the sandbox needs root, unshare and setpriv")
    state = Path("/run") / f"mailticketd-sandbox-{uuid.uuid4().hex[:8]}"  # outside /tmp, which becomes private
    state.mkdir()
    port = free_port()
    (state / "mailticketd.toml").write_text(
        f'[smtp]\nlisten = "127.0.0.1:{port}"\n[http]\nlisten = "127.0.0.1:0"\n'
        f'[mail]\naddresses = ["{SUPPORT}"]\n[operators]\naddresses = ["op@provider.example"]\n'
        f'[storage]\ndatabase = "{state}/var/mailticketd.sqlite3"\n[outbound]\nmaildir = "{state}/var/maildir"\n'
        '[log]\nformat = "json"\n', encoding="utf-8")
    script = SCRIPT.format(state=state, python=sys.executable, root=ROOT)
    log = (tmp_path / "daemon.log").open("wb")
    process = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "bash", "-c", script],
                               cwd=ROOT, stdout=log, stderr=log)
    try:
        wait_for_banner(port, process, tmp_path / "daemon.log")
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.sendmail("anna@customer.example", [SUPPORT], make_mail("anna@customer.example"))
        maildir = state / "var" / "maildir" / "new"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(list(maildir.glob("*"))) < 2:
            time.sleep(0.1)
        delivered = sorted(path.read_bytes().split(b"\n", 1)[0].strip() for path in maildir.glob("*"))
        assert delivered == [b"Delivered-To: anna@customer.example", b"Delivered-To: op@provider.example"], (
            (tmp_path / "daemon.log").read_text())
        assert (state / "reply-token.secret").exists() is False  # the secret lives beside the database
        assert (state / "var" / "reply-token.secret").exists()
    finally:
        process.terminate()
        code = process.wait(timeout=30)
        log.close()
        shutil.rmtree(state, ignore_errors=True)
    assert code == 0, (tmp_path / "daemon.log").read_text()
    assert not Path("/etc/mailticketd-sandbox-probe").exists()


