"""Receive DATA into a spool: memory up to a threshold, a temporary file past it.

aiosmtpd keeps every line of a mail as its own ``bytearray`` and then joins
them, so each 25 MB session held well over 50 MB.  Here the lines go into a
``SpooledTemporaryFile``: a session holds at most ``spool_threshold`` bytes in
memory however big its mail is, and the mail is read back once, a chunk at a
time, inside the inbox transaction, as it is streamed into the database.

The protocol is aiosmtpd's (RFC 5321 §4.5.2 dot-unstuffing, the size limit
answered after the final dot, the line limit of the stream reader); only the
place the bytes go differs.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from collections.abc import Iterator
from typing import IO

from aiosmtpd.smtp import SMTP, Envelope, syntax

_CHUNK = 1 << 20


class SpooledEnvelope(Envelope):
    """aiosmtpd's envelope with the received mail in ``spool`` instead of ``original_content``."""

    def __init__(self) -> None:
        super().__init__()
        self.spool: Spool | None = None


class Spool:
    """One mail's bytes: written line by line while DATA runs, read once in pieces to store it."""

    def __init__(self, threshold: int, directory: Path | None) -> None:
        self._file: IO[bytes] = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - closed by close()
            max_size=threshold, dir=str(directory) if directory else None, prefix="mailticketd-data-")
        self.size = 0

    def write(self, line: bytes | bytearray) -> None:
        self._file.write(line)
        self.size += len(line)

    def discard(self) -> None:
        """Forget what was written (a mail over a limit is refused, not kept)."""
        self._file.seek(0)
        self._file.truncate()
        self.size = 0

    def chunks(self) -> Iterator[bytes]:
        """The mail in pieces of at most 1 MiB, never whole; blocking when the spool is on disk, so iterate it in
        a thread."""
        self._file.seek(0)
        while chunk := self._file.read(_CHUNK):
            yield chunk

    def head(self, limit: int) -> bytes:
        """The first ``limit`` bytes (for the Message-ID in the logs)."""
        self._file.seek(0)
        return self._file.read(limit)

    def close(self) -> None:
        self._file.close()


class SpoolingData(SMTP):
    """aiosmtpd's SMTP whose DATA command writes into a ``Spool``."""

    spool_threshold = 1 << 20
    spool_directory: Path | None = None

    def _create_envelope(self) -> Envelope:
        return SpooledEnvelope()

    def _set_post_data_state(self) -> None:
        envelope = self.envelope
        if isinstance(envelope, SpooledEnvelope) and envelope.spool is not None:
            envelope.spool.close()
        super()._set_post_data_state()  # type: ignore[no-untyped-call]

    def data_progress(self) -> None:
        """Called for every line of DATA (a slow but steady sender is not idle)."""

    def data_finished(self) -> None:
        """Called once a DATA command has been answered."""

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        envelope = self.envelope
        assert isinstance(envelope, SpooledEnvelope)
        if not envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        spool = envelope.spool = Spool(self.spool_threshold, self.spool_directory)
        state = await self._receive(spool)
        if state is not None:
            await self.push(state)
            self._set_post_data_state()
            self.data_finished()
            return
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push(status)
        self.data_finished()

    async def _receive(self, spool: Spool) -> str | None:
        """Read up to the final dot; returns aiosmtpd's refusal when the mail is over a limit."""
        limit = self.data_size_limit
        refusal: str | None = None
        fragments: list[bytes] = []
        while self.transport is not None:
            try:
                line = await self._reader.readuntil(b"\r\n")
            except asyncio.CancelledError:
                self._writer.close()
                raise
            except asyncio.LimitOverrunError as error:
                # A line past the stream limit: drain it, refuse after the final dot (RFC 5321 §4.2.5).
                refusal = refusal or "500 Line too long (see RFC5321 4.5.3.1.6)"
                spool.discard()
                line = await self._reader.read(error.consumed)
            self.data_progress()
            if not fragments and line == b".\r\n":
                break
            fragments.append(line)
            if line.endswith(b"\r\n"):
                whole = _unstuffed(b"".join(fragments) if len(fragments) > 1 else line)
                fragments.clear()
                # The mail's size as stored (without stuffing dots), whatever lines came together.
                if refusal is None and limit and spool.size + len(whole) > limit:
                    refusal = "552 Error: Too much mail data"
                    spool.discard()
                if refusal is None:
                    spool.write(whole)
        return refusal


def _unstuffed(lines: bytes) -> bytes:
    """Whole lines as the client sent them (one, or several from ``DataLines``) without the dot it put before each
    line that begins with one (RFC 5321 §4.5.2)."""
    if lines.startswith(b"."):
        lines = lines[1:]
    return lines.replace(b"\r\n.", b"\r\n") if b"\r\n." in lines else lines
