"""structlog set-up: JSON lines in production, pretty output on a terminal.

Secrets never reach a log line: any value under a key that looks secret is
replaced, and secrets are redacted wherever they appear in a value (nested too):
everything :mod:`agentz_app.secrets` recognises by shape, plus the exact values of the
configured secrets given to :func:`configure_logging` (the entry points pass
:func:`agentz_app.secrets.configured_secret_values`; they live in the processor's closure).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, MutableMapping, Sequence
from typing import Any

import structlog

from agentz_app.secrets import REDACTED, Redactor, redact_text

__all__ = ["REDACTED", "configure_logging", "get_logger", "redact_text", "redact_value"]

_SECRET_KEYS = re.compile(r"(token|secret|password|private_key|authorization|jwt|database_url|api_key)", re.I)
_MAX_DEPTH = 8


def redact_value(
    value: Any, redact: Callable[[str], str] = redact_text, *, by_key: bool = False, depth: int = 0
) -> Any:
    """``value`` with secrets redacted from every string in it (dicts and lists included).

    With ``by_key``, a value under a key that looks secret (``token``, ``password``, ...) is
    replaced whole. Numbers, booleans and None are kept; other objects become redacted text.
    """
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth >= _MAX_DEPTH:
        return redact(str(value))
    if isinstance(value, dict):
        return {key: (REDACTED if by_key and isinstance(key, str) and _SECRET_KEYS.search(key) and item is not None
                      else redact_value(item, redact, by_key=by_key, depth=depth + 1)) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(item, redact, by_key=by_key, depth=depth + 1) for item in value]
    return redact(str(value))


def _redactor(values: Sequence[str]) -> Callable[[Any, str, MutableMapping[str, Any]], MutableMapping[str, Any]]:
    redact = Redactor(tuple(values))

    def processor(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key, value in list(event_dict.items()):
            if _SECRET_KEYS.search(key) and value is not None:
                event_dict[key] = REDACTED
            else:
                event_dict[key] = redact_value(value, redact, by_key=True)
        return event_dict

    return processor


def configure_logging(
    fmt: str = "auto", level: str = "info", *, stream: Any = None, secret_values: Sequence[str] = ()
) -> None:
    """Configure structlog once per process; ``fmt`` is auto, json or console.

    ``secret_values`` are redacted from every line besides the secrets recognised by shape.
    """
    stream = stream or sys.stderr
    pretty = fmt == "console" or (fmt == "auto" and hasattr(stream, "isatty") and stream.isatty())
    renderer: Any = structlog.dev.ConsoleRenderer() if pretty else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redactor(secret_values),
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
