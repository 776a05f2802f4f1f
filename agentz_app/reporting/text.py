"""Cutting text to GitHub's size limits, counted in UTF-8 bytes: pure functions."""

from __future__ import annotations

TRUNCATION_MARKER = "\n\n… (truncated by Agent-Z)"


def truncate_bytes(text: str, limit: int, *, marker: str = TRUNCATION_MARKER) -> str:
    """``text`` cut so that it, marker included, is at most ``limit`` UTF-8 bytes; never splits a character."""
    encoded = text.encode("utf-8", "surrogatepass")
    if len(encoded) <= limit:
        return text
    room = limit - len(marker.encode("utf-8"))
    if room <= 0:
        return marker.encode("utf-8")[:max(limit, 0)].decode("utf-8", "ignore")
    return encoded[:room].decode("utf-8", "ignore") + marker
