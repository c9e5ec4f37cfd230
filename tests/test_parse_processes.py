"""Parsing in worker processes ([inbox] parse_processes): same result, nothing lost when one dies, none left over."""

from __future__ import annotations

import asyncio
import os
import signal
import smtplib
import sqlite3
import time
from pathlib import Path

import pytest

from mailticketd.app import Daemon
from mailticketd.config import ConfigError
from mailticketd.inbox.prepare import PROCESS_LIMIT, PoolLost, Preparer, prepare
from tests.helpers import CORPUS, SUPPORT, make_config, make_mail, send, settle
from tests.process import DaemonProcess, write_config


def _tickets_by_message_id(database: Path) -> dict[str, int]:
    with sqlite3.connect(database) as conn:
        return dict(conn.execute("SELECT message_id, ticket_id FROM articles WHERE message_id IS NOT NULL"))


def _inbox_statuses(database: Path) -> dict[str, int]:
    with sqlite3.connect(database) as conn:
        return dict(conn.execute("SELECT status, count(*) FROM inbox GROUP BY status"))


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` that still run (a zombie has ended)."""
    alive = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.add(pid)
    return alive


def _wait_gone(pids: set[int], timeout: float = 15) -> set[int]:
    deadline = time.monotonic() + timeout
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return _alive(pids)


async def test_every_mail_becomes_its_ticket_while_parse_processes_are_killed(tmp_path: Path) -> None:
    """Parse processes killed with SIGKILL while mail streams in lose no mail: each one becomes its own ticket."""
    config = make_config(tmp_path, inbox={"poll_interval": 0.2, "retry_delay": 0.2, "parse_processes": 2})
    count = 90
    async with Daemon(config) as daemon:
        async def sender(first: int) -> None:
            for index in range(first, count, 3):
                await send(daemon.smtp_port, make_mail(f"user{index}@customer.example", subject=f"Störung {index}",
                                                       message_id=f"kill-{index}@customer.example"))

        async def killer(sending: asyncio.Future[object]) -> int:
            kills = 0
            while kills < 6 and not sending.done():
                try:
                    os.kill(daemon.worker.preparer.process_ids()[0], signal.SIGKILL)
                except (IndexError, ProcessLookupError):  # no pool yet, or one already broken
                    await asyncio.sleep(0.005)
                    continue
                kills += 1
                await asyncio.sleep(0.05)
            return kills

        sending = asyncio.gather(sender(0), sender(1), sender(2))
        kills = await killer(sending)
        await sending
        await settle(daemon, timeout=60)
        pools, losses = daemon.worker.preparer.pools_built, daemon.worker.preparer.losses
    assert kills >= 2
    assert pools >= 2 and losses >= 1  # mails were in the pool when it broke; it was built again
    tickets = _tickets_by_message_id(config.storage.database)
    assert {f"kill-{index}@customer.example" for index in range(count)} <= tickets.keys()
    assert len({tickets[f"kill-{index}@customer.example"] for index in range(count)}) == count
    assert _inbox_statuses(config.storage.database) == {"done": count}


async def test_stopping_the_daemon_ends_its_parse_processes(tmp_path: Path) -> None:
    """After the daemon stops, none of the processes that parsed its mail is still running."""
    config = make_config(tmp_path, inbox={"poll_interval": 0.2, "parse_processes": 2})
    async with Daemon(config) as daemon:
        for index in range(4):
            await send(daemon.smtp_port, make_mail(f"user{index}@customer.example", subject=f"Frage {index}"))
        await settle(daemon)
        pids = set(daemon.worker.preparer.process_ids())
        assert pids
    assert not await asyncio.to_thread(_wait_gone, pids)


def _send_some(port: int, count: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        for index in range(count):
            client.sendmail("kunde@customer.example", [SUPPORT],
                            make_mail(subject=f"Frage {index}", message_id=f"some-{index}@customer.example"))


def _wait_done(database: Path, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while _inbox_statuses(database).get("done", 0) < count:
        assert time.monotonic() < deadline, _inbox_statuses(database)
        time.sleep(0.1)


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGKILL"])
def test_the_daemons_end_leaves_no_process_behind(tmp_path: Path, stop: str) -> None:
    """Whether the daemon is stopped (SIGTERM) or killed (kill -9), every process it started for parsing ends too."""
    config, port = write_config(tmp_path, "parse_processes = 2\n")
    daemon = DaemonProcess(config, port, tmp_path / "daemon.log")
    daemon.start()
    assert daemon.process is not None
    try:
        _send_some(port, 5)
        _wait_done(tmp_path / "db.sqlite3", 5)
        helpers = _descendants(daemon.process.pid)
        assert helpers  # the pool's processes (and the fork server that starts them)
    finally:
        if stop == "SIGTERM":
            assert daemon.terminate() == 0
        else:
            daemon.kill()
    assert not _wait_gone(helpers)


async def test_parse_processes_0_and_big_mails_stay_in_the_daemons_process(tmp_path: Path) -> None:
    """With parse_processes = 0 no parse process is started, and a mail above 1 MiB is parsed in the daemon's own
    process in any case."""
    big = "Zeile mit Text, die sich wiederholt, bis die Mail groß ist.\n" * (PROCESS_LIMIT // 50)
    for processes, body in ((0, "kurz"), (2, big)):
        folder = tmp_path / str(processes)
        folder.mkdir()
        config = make_config(folder, inbox={"poll_interval": 0.2, "parse_processes": processes},
                             smtp={"max_message_size": 4 * PROCESS_LIMIT})
        async with Daemon(config) as daemon:
            await send(daemon.smtp_port, make_mail(body=body, message_id=f"big-{processes}@customer.example"))
            await settle(daemon)
            assert daemon.worker.preparer.pooled_mails == 0
            if processes == 0:
                assert daemon.worker.preparer.pools_built == 0
        assert f"big-{processes}@customer.example" in _tickets_by_message_id(config.storage.database)


async def test_a_parse_process_prepares_corpus_mails_exactly_as_the_thread_does() -> None:
    """Real-world mails parsed in a pool process come back identical (headers, text, cut, attachments)."""
    files = sorted(CORPUS.glob("*.eml"))
    assert files
    preparer = Preparer(1)
    try:
        for path in files:
            raw = path.read_bytes()
            if len(raw) > PROCESS_LIMIT:
                continue
            assert await preparer.prepare(raw, whole=False) == prepare(raw), path.name
        assert preparer.pools_built == 1
    finally:
        await preparer.close()


@pytest.mark.parametrize("value", [-1, 65, "many", True, 1.5])
def test_a_bad_parse_processes_value_is_refused_by_name(tmp_path: Path, value: object) -> None:
    """A wrong [inbox] parse_processes stops the start with a message naming the key and the value given."""
    with pytest.raises(ConfigError) as raised:
        make_config(tmp_path, inbox={"parse_processes": value})
    assert "[inbox] parse_processes" in str(raised.value)
    assert repr(value) in str(raised.value)


async def test_a_mail_whose_parse_process_dies_every_time_fails_after_three_tries() -> None:
    """When the pool process dies on every try of one mail, the third death is an error for that mail (a failed
    attempt, kept and retried later), and the next mail is parsed by a fresh pool."""
    raw = make_mail(body="Zeile mit Text, die sich wiederholt.\n" * (PROCESS_LIMIT // 45))
    assert len(raw) <= PROCESS_LIMIT
    preparer = Preparer(1)
    try:
        preparing = asyncio.create_task(preparer.prepare(raw, whole=False))
        while not preparing.done():
            try:
                os.kill(preparer.process_ids()[0], signal.SIGKILL)
            except (IndexError, ProcessLookupError):
                pass
            await asyncio.sleep(0.005)
        with pytest.raises(PoolLost):
            preparing.result()
        assert preparer.pools_built == 3
        prepared = await preparer.prepare(make_mail(subject="Danach"), whole=False)
        assert prepared.mail.subject == "Danach"
    finally:
        await preparer.close()


async def test_mails_started_together_are_each_prepared_when_their_pool_process_dies() -> None:
    """Mails handed to the pool in one task come back each as its own result, in order; when the process dies
    under them, every one is prepared again and none is lost."""
    mails = [make_mail(subject=f"Störung {index}", body="Zeile mit Text.\n" * (PROCESS_LIMIT // 40))
             for index in range(6)]
    preparer = Preparer(1)
    try:
        together = preparer.start([(raw, False) for raw in mails])
        assert [(await future).mail.subject for future in together] == [f"Störung {index}" for index in range(6)]
        assert preparer.pools_built == 1
        dying = preparer.start([(raw, False) for raw in mails])
        while not preparer.process_ids():
            await asyncio.sleep(0.001)
        os.kill(preparer.process_ids()[0], signal.SIGKILL)
        results = [await future for future in dying]
        assert [prepared.mail.subject for prepared in results] == [f"Störung {index}" for index in range(6)]
        assert preparer.losses >= 1 and preparer.pools_built >= 2
    finally:
        await preparer.close()


async def test_the_parse_processes_start_with_the_daemon_not_with_the_first_mail(tmp_path: Path) -> None:
    """Once the daemon has started, its parse processes come up without waiting for mail, so a storm after a
    restart does not wait for them."""
    config = make_config(tmp_path, inbox={"parse_processes": 1})
    async with Daemon(config) as daemon:
        for _ in range(300):
            if daemon.worker.preparer.process_ids():
                break
            await asyncio.sleep(0.05)
        assert daemon.worker.preparer.process_ids(), "no parse process 15 s after the start"
        assert daemon.worker.preparer.pooled_mails == 0
