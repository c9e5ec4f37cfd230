"""Slow or numerous HTTP clients cannot take the daemon's descriptors, and SMTP keeps working."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import structlog

from mailticketd.app import Daemon
from mailticketd.logs import RepeatLimit, setup_logging
from tests.helpers import SUPPORT, make_config, make_mail, send
from tests.process import ROOT, wait_for_banner, write_config

HALF_A_HEADER = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


async def _half_header(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(HALF_A_HEADER)
    await writer.drain()
    return reader, writer


async def test_a_client_that_never_finishes_its_header_is_closed(tmp_path: Path) -> None:
    """A connection that sends half a request header is closed after ``header_timeout``."""
    async with Daemon(make_config(tmp_path, http={"header_timeout": 0.5})) as daemon:
        reader, writer = await _half_header(daemon.http_port)
        try:
            assert await asyncio.wait_for(reader.read(), 5) == b""
        finally:
            writer.close()


async def test_a_keep_alive_client_may_send_several_requests(tmp_path: Path) -> None:
    """The header deadline starts anew with each request: a steady keep-alive client is served every time."""
    async with Daemon(make_config(tmp_path, http={"header_timeout": 0.5})) as daemon:
        async with aiohttp.ClientSession() as client:
            for _ in range(4):
                async with client.get(f"http://127.0.0.1:{daemon.http_port}/healthz") as response:
                    assert response.status == 200
                await asyncio.sleep(0.3)


async def test_http_connections_past_the_cap_get_503_and_smtp_still_answers(tmp_path: Path) -> None:
    """With ``[http] max_connections`` held by slow clients, one more gets 503 and SMTP still takes mail."""
    config = make_config(tmp_path, http={"max_connections": 5, "header_timeout": 30.0})
    async with Daemon(config) as daemon:
        slow = [await _half_header(daemon.http_port) for _ in range(5)]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", daemon.http_port)
            answer = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            assert answer.startswith(b"HTTP/1.1 503")
            assert (await send(daemon.smtp_port, make_mail())).startswith("2.0.0")
        finally:
            for _, slow_writer in slow:
                slow_writer.close()
        await asyncio.sleep(0.2)
        async with aiohttp.ClientSession() as client:
            async with client.get(f"http://127.0.0.1:{daemon.http_port}/healthz") as response:
                assert response.status == 200


def test_descriptor_exhaustion_by_http_leaves_smtp_working_and_the_log_small(tmp_path: Path) -> None:
    """With 256 descriptors, 400 half-header HTTP clients neither stop SMTP nor flood the log."""
    http_port = _free_port()
    config, smtp_port = write_config(tmp_path, '\n[log]\nformat = "json"\nlevel = "info"\n', http_port=http_port)
    text = config.read_text().replace("[smtp]\n", "[smtp]\nmax_connections = 20\n")
    config.write_text(text.replace("[http]\n", "[http]\nreserve_descriptors = 16\n"))
    log = tmp_path / "daemon.log"

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    with log.open("wb") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "mailticketd", "--config", str(config), "serve"], cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=stderr, preexec_fn=low_limit)
    slow: list[socket.socket] = []
    try:
        wait_for_banner(smtp_port, process)
        for _ in range(400):
            conn = socket.socket()
            conn.settimeout(5)
            try:
                conn.connect(("127.0.0.1", http_port))
                conn.sendall(HALF_A_HEADER)
            except OSError:
                conn.close()
                continue
            slow.append(conn)
        time.sleep(2.0)  # let the flood of refused accepts (if any) reach the log
        with socket.create_connection(("127.0.0.1", smtp_port), timeout=5) as smtp:
            assert smtp.recv(100).startswith(b"220")
        assert asyncio.run(send(smtp_port, make_mail(), rcpt=[SUPPORT])).startswith("2.0.0")
    finally:
        for conn in slow:
            conn.close()
        process.terminate()
        process.wait(timeout=60)
    lines = log.read_text(encoding="utf-8").splitlines()
    assert len(lines) < 200, lines[-5:]
    assert any(json.loads(line).get("event") == "smtp.accepted" for line in lines if line.startswith("{"))


def test_a_listening_daemon_needs_no_new_descriptor_to_store_a_mail(tmp_path: Path) -> None:
    """By the time SMTP answers, the intake's own database connection is open: clients that use up every
    descriptor afterwards cannot make the next mail's commit fail for want of one."""
    config, smtp_port = write_config(tmp_path)
    process = subprocess.Popen([sys.executable, "-m", "mailticketd", "--config", str(config), "serve"], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_banner(smtp_port, process)
        database = (tmp_path / "db.sqlite3").resolve()
        opened = [link for link in Path(f"/proc/{process.pid}/fd").iterdir()
                  if link.resolve() == database]
        assert len(opened) == 2  # the pipeline's connection and the intake's
    finally:
        process.terminate()
        process.wait(timeout=60)


def test_repeated_warnings_are_held_back_and_counted() -> None:
    """A thousand identical errors become a burst of lines; the next line after the window says how many were left out."""
    now = [0.0]
    stream = io.StringIO()
    setup_logging("json", stream=stream)
    handler = logging.getLogger().handlers[0]
    handler.filters[:] = [RepeatLimit(burst=5, window=10.0, clock=lambda: now[0])]
    for _ in range(1000):
        logging.getLogger("asyncio").error("socket.accept() out of system resource")
        structlog.get_logger("mailticketd").info("mail.processed")
    now[0] = 11.0
    logging.getLogger("asyncio").error("socket.accept() out of system resource")
    events = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    accept_errors = [event for event in events if event.startswith("socket.accept()")]
    assert len(accept_errors) == 6
    assert accept_errors[-1].endswith("(and 995 more like it left out)")
    assert events.count("mail.processed") == 1000  # one line per mail is never held back


def test_repeated_warnings_of_the_daemon_itself_are_held_back_and_counted() -> None:
    """The daemon's own lines (written without the standard library) are held back the same way, and its own
    warnings come out in the same JSON as the libraries' records."""
    now = [0.0]
    stream = io.StringIO()
    setup_logging("json", stream=stream)
    processors = structlog.get_config()["processors"]
    [index] = [place for place, processor in enumerate(processors) if isinstance(processor, RepeatLimit)]
    processors[index] = RepeatLimit(burst=5, window=10.0, clock=lambda: now[0])
    log = structlog.get_logger("mailticketd.smtp")
    for _ in range(1000):
        log.warning("smtp.too_many_connections", peer="192.0.2.7")
        log.info("mail.processed")
    now[0] = 11.0
    log.warning("smtp.too_many_connections", peer="192.0.2.7")
    logging.getLogger("asyncio").warning("socket.accept() out of system resource")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    refused = [line for line in lines if line["event"] == "smtp.too_many_connections"]
    assert len(refused) == 6 and refused[-1]["suppressed"] == 995
    assert {line["level"] for line in refused} == {"warning"} and {line["priority"] for line in refused} == {4}
    assert sum(line["event"] == "mail.processed" for line in lines) == 1000  # one line per mail is never held back
    assert lines[-1]["event"] == "socket.accept() out of system resource" and lines[-1]["priority"] == 4


def test_a_log_line_that_cannot_be_written_never_fails_the_work() -> None:
    """With the log's stream gone (a closed pipe to the journal), logging a processed mail or a failure raises
    nothing: the mail's work goes on; lines are written again once there is a stream."""
    gone = io.StringIO()
    setup_logging("json", stream=gone)
    gone.close()
    log = structlog.get_logger("mailticketd.smtp")
    log.info("smtp.accepted", code=250)
    try:
        raise RuntimeError("disk quota exceeded")
    except RuntimeError:
        log.exception("mail.failed")
    again = io.StringIO()
    setup_logging("json", stream=again)
    log.info("smtp.accepted", code=250)
    assert [json.loads(line)["event"] for line in again.getvalue().splitlines()] == ["smtp.accepted"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])




def test_the_unit_raises_the_descriptor_limit_without_needing_setrlimit() -> None:
    """mailticketd.service sets LimitNOFILE high, soft and hard alike (its syscall filter forbids setrlimit)."""
    lines = (ROOT / "mailticketd.service").read_text().splitlines()
    [value] = [line.split("=", 1)[1] for line in lines if line.startswith("LimitNOFILE=")]
    soft, _, hard = value.partition(":")
    assert int(soft) >= 16384 and int(hard or soft) == int(soft)
