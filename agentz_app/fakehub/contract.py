"""Hooks through which tests watch fakehub's traffic (requests, responses, webhooks).

Fakehub calls every registered :class:`TrafficObserver` once per API exchange and once per
emitted webhook. The test suite registers one that validates the traffic against GitHub's
published API description (``tests/contract``), so a drift between the client, the fake
and GitHub fails the suite. Observers must not raise: they record what they find.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Exchange:
    """One API request fakehub answered (test hooks and injected faults excluded)."""

    method: str
    path: str
    """The raw (still percent-encoded) path, without the query string."""
    query: Mapping[str, str]
    body: bytes
    status: int
    response_body: bytes | None
    """None for a 304 or a non-JSON answer."""


class TrafficObserver(Protocol):
    """Something that watches fakehub's API exchanges and webhook payloads."""

    def exchange(self, exchange: Exchange) -> None:
        """Look at one answered API request."""

    def webhook(self, event: str, payload: Mapping[str, Any]) -> None:
        """Look at one webhook payload as it is queued for delivery."""
