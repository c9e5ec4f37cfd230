"""DATA lines as a mail server should read them: bare LF ends a line, an over-long line is wrapped.

aiosmtpd reads DATA with ``readuntil(b"\\r\\n")``: a mail whose lines end in LF alone becomes one
long line, and any line over its limit is refused with a permanent ``500``, which the sending MTA
cannot remedy. This reader stands in for the stream during DATA only. Like Postfix's
``smtpd_forbid_bare_newline = normalize``, it counts a bare LF as a line end but accepts the end
of data only as ``<CR><LF>.<CR><LF>`` (a ``.`` line after a bare LF is content, so no second mail
can be smuggled in). Like Postfix, it breaks a line longer than the limit into pieces joined by
``<CR><LF><SPACE>``: a header stays one folded header, base64 ignores the space.

Most mails need none of that: every line ends in CRLF and none is too long.  For them the reader hands over all
the whole lines the stream holds at once (up to the end of data, which is read on its own), so the DATA loop
runs once per network read rather than once per line: a 200 KB attachment is some 2,700 lines.
"""

from __future__ import annotations

import asyncio
from collections import deque

CRLF = b"\r\n"


class DataLines:
    """Hand aiosmtpd's DATA loop CRLF-terminated lines no longer than ``limit`` bytes."""

    def __init__(self, reader: asyncio.StreamReader, limit: int) -> None:
        self._reader = reader
        self._piece = max(limit - len(CRLF) - 1, 16)  # room for the CRLF and a continuation's space
        self._ready: deque[bytes] = deque()
        self._continuing = False  # the previous piece did not end the client's line
        self._after_bare_lf = False
        # Bytes of DATA handed out so far, and up to where the line-by-line reading goes on: the bytes that were in
        # the stream's buffer when it held a line needing care are each looked at once, never again per line.
        self._taken = 0
        self._lines_until = 0
        self.breaks = 0  # places where an over-long line was broken
        self.bare_lf = 0  # lines that ended in LF alone

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        """For the DATA loop (``separator`` CRLF): one or more whole lines, each ending in CRLF and dot-stuffed as
        the client sent it; the end of data (``.`` CRLF) comes alone."""
        if separator != CRLF:  # not the DATA loop: pass through
            return await self._reader.readuntil(separator)
        if not self._ready and (lines := self._whole_lines()):
            return await self._reader.readexactly(lines)
        while not self._ready:
            await self._fill()
        return self._ready.popleft()

    def _whole_lines(self) -> int:
        """How many bytes at the head of the stream's buffer are whole lines that need no care: each ends in CRLF,
        none is longer than a piece, and the end of data is not among them (0: read the next line on its own).

        The buffer is looked at with the bytes type's own searches; when some line in it needs care, all that the
        buffer held is read line by line, as before this reader took blocks."""
        if self._continuing or self._after_bare_lf or self._taken < self._lines_until:
            return 0
        buffer = getattr(self._reader, "_buffer", None)  # asyncio's StreamReader: read, never changed here
        if not isinstance(buffer, bytearray) or buffer.startswith(b".\r\n"):
            return 0
        end = buffer.find(b"\r\n.\r\n")
        size = end + 2 if end >= 0 else buffer.rfind(b"\r\n") + 2
        if size > 2 and buffer.count(b"\n", 0, size) == buffer.count(b"\r\n", 0, size) and (
                size <= self._piece + 2 or max(map(len, buffer[:size].split(b"\n"))) <= self._piece + 1):
            self._taken += size
            return size
        self._lines_until = self._taken + len(buffer)
        return 0

    async def read(self, n: int = -1) -> bytes:
        return await self._reader.read(n)

    async def _fill(self) -> None:
        try:
            line = await self._reader.readuntil(b"\n")
            ended = True
        except asyncio.LimitOverrunError:
            line = await self._reader.read(self._piece)  # the buffer holds more than this, and no LF in it
            ended = False
        self._taken += len(line)
        content = line[:-1] if ended else line
        bare = ended and not content.endswith(b"\r")
        if ended and not bare:
            content = content[:-1]
        if ended and content == b"." and (bare or self._after_bare_lf) and not self._continuing:
            content = b".."  # a lone dot after a bare LF is text, never the end of the mail
        if self._continuing:
            content = b" " + content
        self._queue(content)
        if ended:
            self.bare_lf += bare
            self._after_bare_lf = bare
        else:
            self.breaks += 1
        self._continuing = not ended

    def _queue(self, content: bytes) -> None:
        while len(content) > self._piece:
            cut = self._piece
            while cut > self._piece - 3 and 0x80 <= content[cut] < 0xC0:
                cut -= 1  # do not split a UTF-8 character
            self._ready.append(content[:cut] + CRLF)
            content = b" " + content[cut:]
            self.breaks += 1
        self._ready.append(content + CRLF)
