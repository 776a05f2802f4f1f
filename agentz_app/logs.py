"""structlog set-up: JSON lines in production, pretty output on a terminal.

Secrets never reach a log line: any value under a key that looks secret is
replaced, and token-shaped strings are redacted wherever they appear.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_KEYS = re.compile(r"(token|secret|password|private_key|authorization|jwt|database_url)", re.I)
_TOKEN_PATTERNS = re.compile(
    r"(gh[pousr]_[A-Za-z0-9_]{16,}|github_pat_[A-Za-z0-9_]{20,}|ghs_[A-Za-z0-9]{16,}"
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"
    r"|x-access-token:[^@\s]+|(?<=://)[^/@\s:]+:[^/@\s]+(?=@))"
)
REDACTED = "[redacted]"


def redact_text(text: str) -> str:
    """Replace token-shaped substrings (GitHub tokens, JWTs, URL credentials)."""
    return _TOKEN_PATTERNS.sub(REDACTED, text)


def _redact(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in list(event_dict.items()):
        if _SECRET_KEYS.search(key) and value is not None:
            event_dict[key] = REDACTED
        elif isinstance(value, str):
            event_dict[key] = redact_text(value)
    return event_dict


def configure_logging(fmt: str = "auto", level: str = "info", *, stream: Any = None) -> None:
    """Configure structlog once per process; ``fmt`` is auto, json or console."""
    stream = stream or sys.stderr
    pretty = fmt == "console" or (fmt == "auto" and hasattr(stream, "isatty") and stream.isatty())
    renderer: Any = structlog.dev.ConsoleRenderer() if pretty else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str | None = None, **bound: Any) -> Any:
    """A structlog logger, optionally with values bound (``run_id``, ``delivery_id``)."""
    logger = structlog.get_logger(name)
    return logger.bind(**bound) if bound else logger
