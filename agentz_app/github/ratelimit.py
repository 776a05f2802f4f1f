"""Read GitHub's rate-limit signals from a response: pure functions, no I/O.

GitHub's guidance, in order: a ``retry-after`` header means wait that long; an
exhausted primary limit (``x-ratelimit-remaining: 0``) means wait until
``x-ratelimit-reset``; any other secondary-limit answer means wait at least a
minute. See "Rate limits for the REST API" in GitHub's documentation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Literal

SECONDARY_DEFAULT_WAIT = 60.0
"""Seconds to wait after a secondary limit that gives no ``retry-after``."""
MIN_PRIMARY_WAIT = 1.0
"""Least wait after an exhausted primary limit whose reset time has already passed (clock skew)."""

_RATE_LIMIT_STATUSES = frozenset({403, 429})
_SECONDARY_MARKERS = ("secondary rate limit", "abuse detection")

Kind = Literal["primary", "secondary"]


@dataclass(frozen=True)
class RateLimitHit:
    """A response that asked us to wait before trying again."""

    kind: Kind
    wait: float
    """Seconds to wait from ``now``; never negative."""
    until: float
    """Epoch seconds when requests may resume."""
    resource: str
    """Rate-limit bucket (``core``, ``search``, ``graphql``, …); ``*`` for secondary limits."""


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Return a header's value, looking its name up case-insensitively."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, candidate in headers.items():
        if key.lower() == lowered:
            return candidate
    return None


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``retry-after`` value (delta seconds or an HTTP date)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if moment is None:
            return None
        seconds = moment.timestamp() - now
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN or infinite
        return None
    return max(seconds, 0.0)


def parse_int_header(headers: Mapping[str, str], name: str) -> int | None:
    """An integer header, or None if absent or malformed."""
    value = header(headers, name)
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def resource_for_path(path: str) -> str:
    """The rate-limit bucket a request path most likely draws from."""
    if path.startswith("/search/") or path == "/search":
        return "search"
    if path.startswith("/graphql"):
        return "graphql"
    return "core"


def response_message(body: object) -> str:
    """The ``message`` of a GitHub error body (bytes, str or decoded JSON), or ``""``."""
    data = body
    if isinstance(data, bytes | bytearray):
        data = bytes(data).decode("utf-8", errors="replace")
    if isinstance(data, str):
        text: str = data
        try:
            data = json.loads(text)
        except ValueError:
            return text[:500]
    if isinstance(data, Mapping):
        message = data.get("message")
        if isinstance(message, str):
            return message
    return ""


def _mentions_secondary_limit(body: object) -> bool:
    message = response_message(body).lower()
    return any(marker in message for marker in _SECONDARY_MARKERS)


def exhausted_until(headers: Mapping[str, str], *, now: float) -> float | None:
    """Epoch seconds until which the primary limit is spent, if the headers say so."""
    remaining = parse_int_header(headers, "x-ratelimit-remaining")
    if remaining is None or remaining > 0:
        return None
    reset = parse_int_header(headers, "x-ratelimit-reset")
    if reset is None:
        return now + SECONDARY_DEFAULT_WAIT
    return float(reset) if reset > now else None


def classify(
    status: int,
    headers: Mapping[str, str],
    body: Any,
    *,
    now: float,
    path: str = "/",
    previous_hits: int = 0,
) -> RateLimitHit | None:
    """Decide whether a response is a rate-limit answer and how long to wait.

    ``body`` may be raw bytes or decoded JSON. A secondary limit without
    ``retry-after`` waits a minute, doubled for each of ``previous_hits`` (earlier
    rate-limit answers to the same request). Returns None for any response that
    is not a rate-limit answer (including a 403 for missing permissions).
    """
    if status not in _RATE_LIMIT_STATUSES:
        return None
    resource = header(headers, "x-ratelimit-resource") or resource_for_path(path)
    retry_after = parse_retry_after(header(headers, "retry-after"), now=now)
    if retry_after is not None:
        return RateLimitHit("secondary", retry_after, now + retry_after, "*")
    remaining = parse_int_header(headers, "x-ratelimit-remaining")
    if remaining == 0:
        reset = parse_int_header(headers, "x-ratelimit-reset")
        if reset is None:
            return RateLimitHit("primary", SECONDARY_DEFAULT_WAIT, now + SECONDARY_DEFAULT_WAIT, resource)
        wait = max(float(reset) - now, MIN_PRIMARY_WAIT)
        return RateLimitHit("primary", wait, now + wait, resource)
    if status == 429 or _mentions_secondary_limit(body):
        wait = SECONDARY_DEFAULT_WAIT * 2 ** min(max(previous_hits, 0), 16)
        return RateLimitHit("secondary", wait, now + wait, "*")
    return None
