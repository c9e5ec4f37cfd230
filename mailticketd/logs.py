"""Set up structlog: JSON lines when not on a terminal (journald reads the level), readable lines on one."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog
from structlog.tracebacks import ExceptionDictTransformer

_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "error": 3, "critical": 2, "exception": 3}


def _journald_priority(_: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    event["priority"] = _PRIORITY.get(event.get("level", method), 6)
    return event


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

    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    set_level(level)
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    logging.getLogger("aiosqlite").setLevel(logging.WARNING)
    logging.getLogger("asyncio").setLevel(logging.WARNING)


def set_level(level: str) -> None:
    """Log from ``level`` up (``debug``, ``info``, ``warning``, ``error``); also what SIGHUP applies."""
    logging.getLogger().setLevel(level.upper())
