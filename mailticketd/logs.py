"""Set up structlog: JSON lines when not on a terminal (journald reads the level), readable lines on one.

The daemon's own lines (a few a mail) go from structlog straight to the stream; the standard library's records
(aiosmtpd, aiohttp, asyncio) through a handler that renders them the same way, under the same lock.  Through the
standard library a line cost about 50 µs (two log records, a search of the stack for the caller, the processors
twice); directly, about 20 µs.  A line that cannot be written (a closed or full stream) is dropped, as the standard
library drops it: logging never fails the work it reports on.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

import structlog
from structlog.tracebacks import ExceptionDictTransformer

_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2, "exception": 3}
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "warn": logging.WARNING,
           "error": logging.ERROR, "exception": logging.ERROR, "critical": logging.CRITICAL}


def _journald_priority(_: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    event["priority"] = _PRIORITY.get(event.get("level", method), 6)
    return event


class RepeatLimit(logging.Filter):
    """Let at most ``burst`` records of one warning or error event through per ``window`` seconds.

    A flood (``socket.accept() out of system resource`` thousands of times a
    second once descriptors run out) would fill the disk with the journal.
    The first record after a quiet window carries ``suppressed``: how many
    were left out.  Info and debug records (one per mail) are never held back.
    """

    def __init__(self, burst: int = 20, window: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.burst, self.window, self.clock = burst, window, clock
        self._seen: dict[tuple[str, int, str], list[float]] = {}  # key -> [window start, count, suppressed]
        self._lock = threading.Lock()  # lines come from worker threads too

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        event = record.msg.get("event", "") if isinstance(record.msg, dict) else str(record.msg)
        suppressed = self.allow(record.name, record.levelno, str(event))
        if suppressed:
            _note_suppressed(record, suppressed)
        return suppressed is not None

    def __call__(self, _: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
        """The same limit as a structlog processor, for the daemon's own lines."""
        level = _LEVELS.get(method, logging.INFO)
        if level < logging.WARNING:
            return event
        suppressed = self.allow("mailticketd", level, str(event.get("event", "")))
        if suppressed is None:
            raise structlog.DropEvent
        if suppressed:
            event["suppressed"] = suppressed
        return event

    def allow(self, name: str, level: int, event: str) -> int | None:
        """None when this record is held back, else how many like it were left out before it."""
        key = (name, level, event[:200])
        with self._lock:
            now = self.clock()
            seen = self._seen.get(key)
            if seen is None or now - seen[0] >= self.window:
                suppressed = int(seen[2]) if seen else 0
                if len(self._seen) > 1000:  # many different events: forget the old windows
                    self._seen.clear()
                self._seen[key] = [now, 1, 0]
                return suppressed
            seen[1] += 1
            if seen[1] <= self.burst:
                return 0
            seen[2] += 1
            return None


def _note_suppressed(record: logging.LogRecord, count: int) -> None:
    if isinstance(record.msg, dict):
        record.msg = {**record.msg, "suppressed": count}
    else:
        record.msg = f"{record.msg} (and {count} more like it left out)"


class _Lines:
    """structlog's logger: each rendered line written to the stream ``setup_logging`` chose last, and flushed."""

    def __init__(self) -> None:
        self.stream: TextIO = sys.stderr
        self.level = logging.INFO
        self.lock: threading.RLock | threading.Lock = threading.Lock()  # the handler's, once there is one
        self.dropped = 0  # lines that could not be written

    def msg(self, message: str) -> None:
        try:
            with self.lock:
                self.stream.write(message + "\n")
                self.stream.flush()
        except (OSError, ValueError) as error:  # a closed pipe, a full disk, a closed stream
            self.dropped += 1
            fallback = sys.__stderr__
            if self.dropped == 1 and fallback is not None and fallback is not self.stream:
                with contextlib.suppress(Exception):
                    fallback.write(f"mailticketd: a log line could not be written: {error}\n")

    debug = info = warning = warn = error = exception = critical = msg

    def __call__(self, *_: Any) -> _Lines:  # the logger factory: every logger writes through this one
        return self

    def below_level(self, _: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
        """The first processor: a line below the level is dropped before anything is worked out for it."""
        if _LEVELS.get(method, logging.INFO) < self.level:
            raise structlog.DropEvent
        return event


_LINES = _Lines()


def setup_logging(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Render structlog's lines and the standard library's records (aiosmtpd, aiosqlite) alike, to ``stream``."""
    stream = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if use_json:
        # Locals would put mail bodies and tokens into the journal: never show them.
        renderer: Any = structlog.processors.JSONRenderer(ensure_ascii=False)
        final: list[Any] = [
            _journald_priority,
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
            renderer,
        ]
    else:
        final = [structlog.dev.ConsoleRenderer(colors=stream.isatty())]

    # Loggers are cached on first use (one mail's log lines no longer rebuild them); a cached logger holds the
    # configured list of processors and its logger (``_LINES``) itself, so a second call changes that list in place
    # and the stream ``_LINES`` writes to, rather than replacing them.
    _LINES.stream = stream
    processors = structlog.get_config()["processors"]
    processors[:] = [_LINES.below_level, *shared, RepeatLimit(), *final]
    structlog.configure(
        processors=processors,
        logger_factory=_LINES,
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),  # the level: ``_LINES.below_level``
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(RepeatLimit())
    _LINES.lock = handler.lock or threading.RLock()  # one line at a time on the stream, whoever writes it
    root = logging.getLogger()
    root.handlers[:] = [handler]
    set_level(level)
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)
    logging.getLogger("asyncio").setLevel(logging.WARNING)


def set_level(level: str) -> None:
    """Log from ``level`` up (``debug``, ``info``, ``warning``, ``error``); also what SIGHUP applies."""
    logging.getLogger().setLevel(level.upper())
    _LINES.level = logging.getLogger().level
