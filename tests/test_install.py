"""The production install of docs/install.md, run as it stands, and the wheel it builds.

systemd is not PID 1 here, so the steps run in a private mount namespace
where ``/etc``, ``/opt``, ``/var/lib`` and ``/usr/local`` are overlays on
throw-away folders (the machine itself is left as it was); the daemon is then
started the way the unit asks: as its user and group, in its working
directory, with its environment and umask.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import smtplib
import socket
import stat
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import free_port, make_mail
from tests.process import ROOT, wait_for_banner

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
OVERLAID = ("etc", "opt", "var/lib", "usr/local")
MOUNT = """
set -e
for folder in {overlaid}; do
    mkdir -p "{work}/upper/$folder" "{work}/work/$folder"
    mount -t overlay overlay -o "lowerdir=/$folder,upperdir={work}/upper/$folder,workdir={work}/work/$folder" "/$folder"
done
echo mounted
exec sleep 3600
"""


def clean_copy(target: Path) -> Path:
    """This checkout's files as a clean checkout (or an unpacked release) has them: no venv, no build output."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    return target


def install_steps() -> str:
    """The shell block of docs/install.md between its install-steps markers."""
    text = (ROOT / "docs" / "install.md").read_text(encoding="utf-8")
    block = text.split("<!-- install-steps: begin -->", 1)[1].split("<!-- install-steps: end -->", 1)[0]
    return block.strip().removeprefix("```sh").removesuffix("```")


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in (ROOT / "mailticketd.service").read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


class Namespace:
    """A mount namespace with the overlays; commands run inside it with nsenter."""

    def __init__(self, work: Path) -> None:
        self.work = work
        script = MOUNT.format(overlaid=" ".join(OVERLAID), work=work)
        self.holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "bash", "-c", script],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.holder.stdout is not None
        if self.holder.stdout.readline().strip() != "mounted":
            self.holder.kill()
            pytest.fail(f"cannot build the overlays: {self.holder.communicate()[1]}")

    def run(self, command: list[str], *, cwd: str = "/", env: dict[str, str] | None = None,
            input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        base = {"PATH": SYSTEM_PATH, "HOME": "/root", "LANG": "C.UTF-8"}
        base |= {key: value for key, value in os.environ.items() if key.startswith("PIP_")}  # the site's index
        result = subprocess.run(["nsenter", "--target", str(self.holder.pid), "--mount", "--wd=" + cwd, "--",
                                 "env", "-i", *[f"{k}={v}" for k, v in (env or base).items()], *command],
                                capture_output=True, text=True, input=input, timeout=600)
        if check:
            assert result.returncode == 0, (command, result.stdout, result.stderr)
        return result

    def popen(self, command: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            return subprocess.Popen(["nsenter", "--target", str(self.holder.pid), "--mount", "--", *command],
                                    stdout=out, stderr=out)

    def upper(self, path: str) -> Path:
        """Where a file the steps made under one of the overlaid folders really lies (owners and modes kept)."""
        return self.work / "upper" / path.lstrip("/")

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait(timeout=30)


@pytest.fixture
def namespace(tmp_path: Path) -> Iterator[Namespace]:
    if os.geteuid() != 0 or not all(shutil.which(tool) for tool in ("unshare", "nsenter", "setpriv", "useradd")):
        pytest.skip("the install steps need root, unshare, nsenter, setpriv and useradd")
    work = tmp_path / "system"
    work.mkdir()
    space = Namespace(work)
    try:
        yield space
    finally:
        space.close()


def test_the_documented_install_gives_a_service_that_works_beside_the_cli(tmp_path: Path, namespace: Namespace) -> None:
    """docs/install.md's steps, run as written, leave the right owners and modes; the daemon runs as the unit
    starts it, and root's CLI finds the config by itself, sees its tickets and leaves files the daemon can use."""
    source = clean_copy(tmp_path / "mailticketd-0.1.0")
    namespace.run(["bash", "-euc", install_steps()], cwd=str(source))
    uid, gid = (int(value) for value in namespace.run(["sh", "-c", "id -u mailticketd; id -g mailticketd"])
                .stdout.split())
    assert uid != 0 and gid != 0

    def owned(path: str) -> tuple[int, int, str]:
        info = namespace.upper(path).stat()
        return info.st_uid, info.st_gid, oct(stat.S_IMODE(info.st_mode))

    assert owned("/etc/mailticketd") == (0, gid, "0o750")
    assert owned("/etc/mailticketd/mailticketd.toml") == (0, gid, "0o640")
    assert owned("/var/lib/mailticketd") == (uid, gid, "0o750")
    assert owned("/etc/systemd/system/mailticketd.service") == (0, 0, "0o644")
    assert namespace.upper("/etc/systemd/system/mailticketd.service").read_bytes() == (
        ROOT / "mailticketd.service").read_bytes()
    venv = namespace.upper("/opt/mailticketd/venv")
    [site] = list(venv.glob("lib/python3*/site-packages"))
    assert (site / "mailticketd" / "templates" / "de" / "ack.txt").exists()
    assert not (site / "tests").exists() and not (site / "pytest").exists()  # no test tools in production
    assert os.readlink(namespace.upper("/usr/local/bin/mailticketd")) == "/opt/mailticketd/venv/bin/mailticketd"

    # The admin edits the config (an editor keeps owner and mode), checks it and creates the database as root.
    smtp_port, http_port = free_port(), free_port()
    text = (source / "config" / "mailticketd.toml").read_text(encoding="utf-8")
    text = (text.replace('listen = "127.0.0.1:2525"', f'listen = "127.0.0.1:{smtp_port}"')
                .replace('listen = "127.0.0.1:8025"', f'listen = "127.0.0.1:{http_port}"')
                .replace('addresses = ["support@localhost"]', 'addresses = ["support@example.net"]')
                .replace('addresses = []', 'addresses = ["op@provider.example"]')
                .replace('format = "auto"', 'format = "json"'))
    namespace.run(["sh", "-c", "cat > /etc/mailticketd/mailticketd.toml"], input=text)
    assert owned("/etc/mailticketd/mailticketd.toml") == (0, gid, "0o640")
    checked = namespace.run(["mailticketd", "check-config"], cwd="/root")
    assert "config OK: /etc/mailticketd/mailticketd.toml" in checked.stdout
    refused = namespace.run(["mailticketd", "tickets"], cwd="/tmp", check=False)
    assert refused.returncode == 1 and "no database at /var/lib/mailticketd/var/mailticketd.sqlite3" in refused.stderr
    namespace.run(["mailticketd", "migrate"], cwd="/root")
    namespace.run(["mailticketd", "--actor", "admin", "org", "create", "Kunde GmbH", "--commercial",
                   "chef@kunde.example", "--technical", "technik@kunde.example"], cwd="/root")
    for made in ("var", "var/mailticketd.sqlite3", "var/reply-token.secret"):
        assert owned(f"/var/lib/mailticketd/{made}")[:2] == (uid, gid), made

    # The daemon as the unit starts it.
    unit = unit_settings()
    environment = ["PATH=" + SYSTEM_PATH, "HOME=/var/lib/mailticketd", "USER=mailticketd", "LOGNAME=mailticketd",
                   "STATE_DIRECTORY=/var/lib/mailticketd", "CONFIGURATION_DIRECTORY=/etc/mailticketd",
                   *unit["Environment"]]
    command = ["env", "-i", *environment, "setpriv", f"--reuid={unit['User'][0]}", f"--regid={unit['Group'][0]}",
               "--init-groups", "--no-new-privs", "bash", "-c",
               f'cd {unit["WorkingDirectory"][0]} && umask {unit["UMask"][0]} && exec {unit["ExecStart"][0]}']
    log = tmp_path / "daemon.log"
    daemon = namespace.popen(command, log)
    try:
        wait_for_banner(smtp_port, daemon, log, timeout=60)
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as client:
            client.sendmail("anna@customer.example", ["support@example.net"],
                            make_mail("anna@customer.example", to="support@example.net", subject="Installed"))
        deadline = time.monotonic() + 30
        while True:
            listed = namespace.run(["mailticketd", "tickets", "--json"], cwd="/tmp")
            if json.loads(listed.stdout) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert [row["subject"] for row in json.loads(listed.stdout)] == ["Installed"], log.read_text()
        status = namespace.run(["mailticketd", "status"], cwd="/root", check=False)
        assert status.returncode == 0, status.stdout
        second = namespace.run(["mailticketd", "serve"], cwd="/root", check=False)
        assert second.returncode == 1 and "already serves the database" in second.stderr
    finally:
        daemon.terminate()
        code = daemon.wait(timeout=60)
    assert code == 0, log.read_text()
    events = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert any(event["event"] == "outbox.sent" for event in events)  # it used the secret root's CLI made
    for path in namespace.upper("/var/lib/mailticketd").rglob("*"):
        assert path.stat().st_uid == uid, path
    assert not list(Path("/tmp").glob("var/mailticketd.sqlite3"))




def test_the_wheel_carries_the_templates_and_no_test_tools(tmp_path: Path) -> None:
    """A wheel built from a clean checkout holds the package, its templates, defaults and migrations, and no tests."""
    source = clean_copy(tmp_path / "source")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir",
                            str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    [wheel] = list((tmp_path / "dist").glob("mailticketd-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {name.removeprefix("mailticketd/templates/") for name in names
               if name.startswith("mailticketd/templates/")}
    assert shipped == {str(path.relative_to(ROOT / "templates")) for path in (ROOT / "templates").rglob("*")
                       if path.is_file()}
    assert {"mailticketd/defaults.toml", "mailticketd/storage/migrations/sqlite/0001_initial.sql",
            "mailticketd/storage/migrations/postgresql/0001_initial.sql"} <= names
    assert not [name for name in names if name.startswith(("tests/", "bench/"))]
    assert not [name for name in names if re.search(r"\.sqlite3|/var/", name)]


def test_the_readme_try_out_works_when_pasted_as_it_stands(tmp_path: Path) -> None:
    """The README's "Try it" block, run in a clean copy (``make run &`` building .venv first), shows the ticket and
    the acknowledgement."""
    for tool in ("make", "swaks"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: `make test` installs it")
    if Path("/etc/mailticketd/mailticketd.toml").exists():
        pytest.skip("this machine has a production config, which the try-out would read")
    for port in (2525, 8025):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                pytest.skip(f"port {port} is in use (a daemon of `make run`?)")
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("<!-- try-it: begin -->", 1)[1].split("<!-- try-it: end -->", 1)[0]
    block = block.strip().removeprefix("```sh").removesuffix("```")
    source = clean_copy(tmp_path / "checkout")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("MAILTICKETD_", "VIRTUAL_ENV"))}
    env["PATH"] = os.pathsep.join(part for part in env["PATH"].split(os.pathsep) if "/.venv/" not in part)
    output, errors = tmp_path / "stdout", tmp_path / "stderr"  # files: the daemon in the background keeps them open
    with output.open("wb") as out_file, errors.open("wb") as err_file:
        shell = subprocess.Popen(["bash", "-c", f"set -e\n{block}"], cwd=source, env=env, start_new_session=True,
                                 stdout=out_file, stderr=err_file)
    try:
        code = shell.wait(timeout=900)
    finally:
        os.killpg(shell.pid, 15)  # the `make run &` daemon of the pasted block
        time.sleep(1)
    out = output.read_text(encoding="utf-8")
    assert code == 0, errors.read_text(encoding="utf-8")
    assert "[MH#10000]" in out and "anna@example.com" in out, out
    delivered = [path.read_text(encoding="utf-8") for path in (source / "var" / "maildir" / "new").iterdir()]
    assert any("Delivered-To: anna@example.com" in mail and "/verify/" in mail for mail in delivered), delivered
