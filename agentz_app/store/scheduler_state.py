"""The scheduler's shared state: dirty marks, the latest ranking pass and resync cursors.

Every function works in the caller's session, so a mark is written in the same
transaction as the change that caused it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from agentz_app.store.models import DirtyMark, ResyncCursor, SchedulerPass, now


def mark_dirty(session: Session, repo: str, *, reason: str, at: float | None = None) -> None:
    """Record that ``repo``'s candidate snapshot may have changed.

    ``since`` keeps the first unscheduled change, ``last`` the latest: the scheduler
    waits for quiet after ``last`` but never longer than its ceiling after ``since``.
    """
    stamp = now() if at is None else at
    row = session.get(DirtyMark, repo)
    if row is None:
        session.add(DirtyMark(repo=repo, since=stamp, last=stamp, reason=reason))
    else:
        row.last, row.reason = stamp, reason


def dirty_repos(session: Session) -> dict[str, dict[str, float | str]]:
    """Repositories marked dirty, with when the first and the last mark happened."""
    return {row.repo: {"since": row.since, "last": row.last, "reason": row.reason}
            for row in session.scalars(select(DirtyMark))}


def is_dirty(session: Session, repo: str) -> bool:
    """True while ``repo`` carries a dirty mark."""
    return session.get(DirtyMark, repo) is not None


def clear_dirty(session: Session, repo: str, *, up_to: float) -> None:
    """Clear the mark unless a newer one arrived after ``up_to``.

    A newer mark stays, its first unscheduled change counted from ``up_to``.
    """
    row = session.get(DirtyMark, repo)
    if row is None:
        return
    if row.last <= up_to:
        session.delete(row)
    else:
        row.since = max(row.since, up_to)


@dataclass(frozen=True)
class PassSummary:
    """What one ranking pass over a repository did."""

    at: float
    calls: int
    prompt_chars: int
    candidates: int
    assessed: int
    admitted: int


def record_pass(session: Session, repo: str, summary: PassSummary) -> None:
    """Remember ``summary`` as ``repo``'s latest ranking pass."""
    row = session.get(SchedulerPass, repo)
    if row is None:
        row = SchedulerPass(repo=repo)
        session.add(row)
    row.at, row.calls, row.prompt_chars = summary.at, summary.calls, summary.prompt_chars
    row.candidates, row.assessed, row.admitted = summary.candidates, summary.assessed, summary.admitted


def last_pass_at(session: Session, repo: str) -> float | None:
    """When ``repo`` was last ranked, or None if never."""
    row = session.get(SchedulerPass, repo)
    return row.at if row is not None else None


@dataclass(frozen=True)
class ResyncState:
    """The last good and the last failed resync of a repository (epoch seconds, 0 for never)."""

    ok_at: float
    failed_at: float
    error: str = ""


def resync_state(session: Session, repo: str) -> ResyncState | None:
    """``repo``'s resync cursor, or None when it was never resynced."""
    row = session.get(ResyncCursor, repo)
    if row is None:
        return None
    return ResyncState(ok_at=row.ok_at or 0.0, failed_at=row.failed_at or 0.0, error=row.error)


def record_resync(session: Session, repo: str, *, ok: bool, error: str = "", at: float | None = None) -> None:
    """Record a resync of ``repo`` that succeeded or failed with ``error``."""
    stamp = now() if at is None else at
    row = session.get(ResyncCursor, repo)
    if row is None:
        row = ResyncCursor(repo=repo)
        session.add(row)
    if ok:
        row.ok_at, row.error = stamp, ""
    else:
        row.failed_at, row.error = stamp, error[:500]
