"""structlog configured in one place: JSON lines to a file, readable console output on a terminal.

Every event is bounded and redacted before it goes anywhere: each string field is capped at
`LOG_CAP_CHARS` (head and tail, size and sha256 kept) and known secrets are replaced.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, TextIO

import structlog

from harness import scrub

__all__ = ["LOG_CAP_CHARS", "configure_logging"]

LOG_CAP_CHARS = 4_096
"""Longest string field a log event keeps whole (a 50 MB error body is logged as an excerpt)."""

_file: TextIO | None = None


class _Tee:
    """Send each event the logger lets through to the JSON file and, above a threshold, to the console."""

    def __init__(self, json_out: TextIO | None, console_level: int, console: structlog.dev.ConsoleRenderer):
        self.json_out = json_out
        self.console_level = console_level
        self.console = console
        self.json = structlog.processors.JSONRenderer()

    def __call__(self, logger: Any, method: str, event: dict[str, Any]) -> str:
        level = logging.getLevelName(method.upper()) if isinstance(logging.getLevelName(method.upper()), int) else logging.INFO
        if self.json_out is not None:
            self.json_out.write(self.json(logger, method, dict(event)) + "\n")
            self.json_out.flush()
        if level >= self.console_level:
            return self.console(logger, method, event)
        raise structlog.DropEvent


def _bound(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    """Cap and redact every field of an event, for the file and the console alike."""
    return {key: scrub.redact_value(scrub.cap_value(value, LOG_CAP_CHARS)) for key, value in event.items()}


def configure_logging(log_file: Path | None = None, *, verbose: bool = False, quiet: bool = False) -> None:
    """Configure structlog for the CLI: events from info up (all with `verbose`) as JSON to `log_file`,
    warnings (or all with `verbose`) to stderr, rendered for people when stderr is a terminal.

    Debug events (one per model request) are dropped before any processing unless `verbose`: every
    request is in results.jsonl already, and rendering and flushing a log line per request cost the
    event loop more than the request itself on a fast server."""
    global _file
    if _file is not None:
        _file.close()
        _file = None
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        _file = log_file.open("a", encoding="utf-8")
    console_level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING
    renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _bound,
            _Tee(_file, console_level, renderer),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG if verbose else logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
