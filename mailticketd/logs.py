"""Set up structlog: JSON lines when not on a terminal (journald reads the level), readable lines on one."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import structlog
from structlog.tracebacks import ExceptionDictTransformer

_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2, "exception": 3}


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

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        event = record.msg.get("event", "") if isinstance(record.msg, dict) else str(record.msg)
        key = (record.name, record.levelno, str(event)[:200])
        now = self.clock()
        seen = self._seen.get(key)
        if seen is None or now - seen[0] >= self.window:
            suppressed = int(seen[2]) if seen else 0
            if len(self._seen) > 1000:  # many different events: forget the old windows
                self._seen.clear()
            self._seen[key] = [now, 1, 0]
            if suppressed:
                _note_suppressed(record, suppressed)
            return True
        seen[1] += 1
        if seen[1] <= self.burst:
            return True
        seen[2] += 1
        return False


def _note_suppressed(record: logging.LogRecord, count: int) -> None:
    if isinstance(record.msg, dict):
        record.msg = {**record.msg, "suppressed": count}
    else:
        record.msg = f"{record.msg} (and {count} more like it left out)"


def setup_logging(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Route structlog and the standard library's logging (aiosmtpd, aiosqlite) through one renderer."""
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
    # configured list of processors itself, so a second call changes that list in place rather than replacing it.
    processors = structlog.get_config()["processors"]
    # A line below the level is dropped first, before its time stamp and fields are worked out.
    processors[:] = [structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter]
    structlog.configure(
        processors=processors,
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(RepeatLimit())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    set_level(level)
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)
    logging.getLogger("asyncio").setLevel(logging.WARNING)


def set_level(level: str) -> None:
    """Log from ``level`` up (``debug``, ``info``, ``warning``, ``error``); also what SIGHUP applies."""
    logging.getLogger().setLevel(level.upper())
