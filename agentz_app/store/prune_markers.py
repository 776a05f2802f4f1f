"""When each retention prune last started and finished (``prune_markers``), shared by every host."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from agentz_app.store.db import Database
from agentz_app.store.models import PruneMarker


def claim_marker(db: Database, key: str, at: float, *, due: Callable[[float | None], bool]) -> bool:
    """Record a prune starting at ``at`` under ``key`` if ``due(last start)`` says so; True if claimed.

    The row is locked while deciding, so of several processes one claims the prune.
    """
    dialect_insert = sqlite.insert if db.is_sqlite else postgresql.insert
    with db.begin() as session:
        session.execute(dialect_insert(PruneMarker).values(key=key).on_conflict_do_nothing(index_elements=["key"]))
        row = session.get(PruneMarker, key, with_for_update=True, populate_existing=True)
        if row is None or not due(row.started_at):  # None: deleted between the two statements
            return False
        row.started_at = at
        return True


def finish_marker(db: Database, key: str, at: float, removed: Mapping[str, Any]) -> None:
    """Remember when the prune claimed under ``key`` finished and what it removed."""
    with db.begin() as session:
        row = session.get(PruneMarker, key, with_for_update=True, populate_existing=True)
        if row is not None:
            row.finished_at, row.removed = at, dict(removed)


def marker_keys(db: Database) -> list[str]:
    """Every prune marker's key."""
    with db.read() as session:
        return sorted(session.scalars(select(PruneMarker.key)))
