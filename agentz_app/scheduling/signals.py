"""Wake-up signals between processes, kept in the database (no polling of GitHub).

Ingress marks a repository dirty when something that matters to scheduling changed;
the scheduler debounces those marks into one evaluation.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from agentz_app.store.models import KeyValue, now

DIRTY_PREFIX = "scheduler:dirty:"


def mark_dirty(session: Session, repo: str, *, reason: str, at: float | None = None) -> None:
    """Record that ``repo``'s candidate snapshot may have changed (in the caller's transaction).

    ``since`` keeps the first unscheduled change, ``last`` the latest: the scheduler
    waits for quiet after ``last`` but never longer than its ceiling after ``since``.
    """
    key = DIRTY_PREFIX + repo
    row = session.get(KeyValue, key)
    stamp = now() if at is None else at
    if row is None:
        session.add(KeyValue(key=key, value={"since": stamp, "last": stamp, "reason": reason}, updated_at=stamp))
    else:
        row.value = {"since": row.value.get("since", stamp), "last": stamp, "reason": reason}
        row.updated_at = stamp


def dirty_repos(session: Session) -> dict[str, dict[str, float | str]]:
    """Repositories marked dirty, with when the first and the last mark happened."""
    rows = session.scalars(select(KeyValue).where(KeyValue.key.like(DIRTY_PREFIX + "%")))
    return {row.key[len(DIRTY_PREFIX) :]: dict(row.value) for row in rows}


def clear_dirty(session: Session, repo: str, *, up_to: float) -> None:
    """Clear the mark unless a newer one arrived after ``up_to``.

    A newer mark stays, its first unscheduled change counted from ``up_to``.
    """
    row = session.get(KeyValue, DIRTY_PREFIX + repo)
    if row is None:
        return
    if float(row.value.get("last", 0)) <= up_to:
        session.delete(row)
    else:
        row.value = {**row.value, "since": max(float(row.value.get("since", 0)), up_to)}
