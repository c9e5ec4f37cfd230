"""DATA lines as a mail server should read them: bare LF ends a line, an over-long line is wrapped.

aiosmtpd reads DATA with ``readuntil(b"\\r\\n")``: a mail whose lines end in LF alone becomes one
long line, and any line over its limit is refused with a permanent ``500``, which the sending MTA
cannot remedy. This reader stands in for the stream during DATA only. Like Postfix's
``smtpd_forbid_bare_newline = normalize``, it counts a bare LF as a line end but accepts the end
of data only as ``<CR><LF>.<CR><LF>`` (a ``.`` line after a bare LF is content, so no second mail
can be smuggled in). Like Postfix, it breaks a line longer than the limit into pieces joined by
``<CR><LF><SPACE>``: a header stays one folded header, base64 ignores the space.
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
        self.breaks = 0  # places where an over-long line was broken
        self.bare_lf = 0  # lines that ended in LF alone

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        if separator != CRLF:  # not the DATA loop: pass through
            return await self._reader.readuntil(separator)
        while not self._ready:
            await self._fill()
        return self._ready.popleft()

    async def read(self, n: int = -1) -> bytes:
        return await self._reader.read(n)

    async def _fill(self) -> None:
        try:
            line = await self._reader.readuntil(b"\n")
            ended = True
        except asyncio.LimitOverrunError:
            line = await self._reader.read(self._piece)  # the buffer holds more than this, and no LF in it
            ended = False
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
