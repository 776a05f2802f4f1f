"""Pure rendering of inbox deliveries for the command line.

Event, action, repository and error text come from webhook payloads and handler
failures; table cells keep only printable characters, so no escape sequence in them
reaches the operator's terminal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agentz_app.ingress.inbox import DeliveryRecord
from agentz_app.run_views import format_timestamp, render_table

COLUMNS = ("id", "delivery", "event", "repo", "state", "attempts", "received", "dead", "error")
_ERROR_WIDTH = 60
_FIELD_WIDTH = 64


def printable(text: str | None, width: int = _FIELD_WIDTH) -> str:
    """``text`` on one line with control characters replaced by ``?``, cut to ``width`` characters."""
    if not text:
        return ""
    flat = " ".join(text.split())
    safe = "".join(char if char.isprintable() else "?" for char in flat)
    return safe if len(safe) <= width else safe[: width - 1] + "…"


def delivery_row(record: DeliveryRecord) -> dict[str, str]:
    """One table row for ``deliveries list``."""
    event = record.event + (f"/{record.action}" if record.action else "")
    return {
        "id": str(record.id),
        "delivery": printable(record.delivery_id),
        "event": printable(event),
        "repo": printable(record.repo),
        "state": record.state,
        "attempts": str(record.attempts),
        "received": format_timestamp(record.received_at),
        "dead": format_timestamp(record.dead_at) if record.dead_at is not None else "",
        "error": printable(record.error, _ERROR_WIDTH),
    }


def deliveries_table(records: Sequence[DeliveryRecord], *, dead_only: bool = False) -> str:
    """The ``deliveries list`` table, or a short note when there is nothing to show."""
    if not records:
        return "no dead deliveries" if dead_only else "no deliveries"
    return render_table([delivery_row(record) for record in records], COLUMNS)


def delivery_record(record: DeliveryRecord) -> dict[str, Any]:
    """A delivery as JSON-ready data (the full error text included)."""
    return {
        "id": record.id, "delivery_id": record.delivery_id, "event": record.event, "action": record.action,
        "repo": record.repo, "state": record.state, "attempts": record.attempts, "error": record.error,
        "received_at": record.received_at, "processed_at": record.processed_at, "dead_at": record.dead_at,
        "next_attempt_at": record.next_attempt_at,
    }
