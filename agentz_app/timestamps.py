"""GitHub's ISO 8601 timestamps as epoch seconds (pure)."""

from __future__ import annotations

from datetime import datetime


def github_time(value: object) -> float:
    """``2026-11-25T17:42:59Z`` as epoch seconds; 0.0 for anything missing or malformed."""
    if not isinstance(value, str) or not value:
        return 0.0
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0
