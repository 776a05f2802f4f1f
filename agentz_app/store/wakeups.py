"""Wake-ups: facts a webhook recorded about a run, claimed and acted on by a worker.

A webhook handler records a wake-up in the same transaction as the facts it stores;
it never acts on the run itself. A worker claims due wake-ups under a lease (two
workers never hold the same one; a worker that dies mid-act loses it when the lease
expires, and another acts again), acts, and removes what it acted on. Recording a
wake-up that is already pending refreshes it and bumps its generation: a worker that
acted on the older facts hands it back instead of removing it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import CursorResult, and_, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from agentz_app.store.db import Database
from agentz_app.store.models import Run, RunWakeup

WAKE_LEASE_SECONDS = 120.0  # a worker that dies while acting frees its wake-up after this long


@dataclass(frozen=True)
class Wakeup:
    """A claimed wake-up: what to act on, and the fencing fields that let its holder remove it."""

    run_id: str
    key: str
    reason: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    generation: int = 1
    attempts: int = 1
    owner: str = ""


def record_wakeup(session: Session, run_id: str, *, reason: str, key: str | None = None,
                  payload: Mapping[str, Any] | None = None, at: float) -> None:
    """Wake ``run_id`` for ``reason`` (inside the caller's transaction); pending ones are refreshed."""
    values = {"run_id": run_id, "key": key or reason, "reason": reason, "payload": dict(payload or {}),
              "generation": 1, "attempts": 0, "woken_at": at, "due_at": at}
    dialect_insert = sqlite.insert if session.get_bind().dialect.name == "sqlite" else postgresql.insert
    statement = dialect_insert(RunWakeup).values(**values)
    session.execute(statement.on_conflict_do_update(
        index_elements=["run_id", "key"],
        set_={"reason": reason, "payload": statement.excluded.payload, "generation": RunWakeup.generation + 1,
              "attempts": 0, "woken_at": at, "due_at": at},
    ))


def runs_on_head(session: Session, repo: str, head_sha: str, statuses: Collection[str]) -> list[str]:
    """Ids of the runs of ``repo`` whose pushed head is ``head_sha`` and whose status is in ``statuses``."""
    return list(session.scalars(
        select(Run.id).where(Run.repo == repo, Run.head_sha == head_sha, Run.status.in_(list(statuses)))
        .order_by(Run.created_at)
    ).all())


def _claimable(at: float) -> ColumnElement[bool]:
    return and_(RunWakeup.due_at <= at,
                or_(RunWakeup.lease_owner.is_(None), RunWakeup.lease_expires_at < at))


def has_due_wakeups(db: Database, *, at: float) -> bool:
    """A cheap read: is any wake-up due and unheld?"""
    with db.read() as session:
        return session.scalars(select(RunWakeup.run_id).where(_claimable(at)).limit(1)).first() is not None


def pending_wakeups(db: Database, run_id: str | None = None) -> list[Wakeup]:
    """Every recorded wake-up (of ``run_id``), oldest first, held or not."""
    with db.read() as session:
        query = select(RunWakeup).order_by(RunWakeup.woken_at)
        if run_id is not None:
            query = query.where(RunWakeup.run_id == run_id)
        return [Wakeup(row.run_id, row.key, row.reason, dict(row.payload or {}), row.generation, row.attempts,
                       row.lease_owner or "") for row in session.scalars(query)]


def claim_wakeups(db: Database, owner: str, *, at: float, limit: int = 10,
                  lease_seconds: float = WAKE_LEASE_SECONDS) -> list[Wakeup]:
    """Lease up to ``limit`` due wake-ups to ``owner``, oldest first; each is held by one owner at a time."""
    claimed = []
    with db.begin() as session:
        rows = session.execute(
            select(RunWakeup.run_id, RunWakeup.key, RunWakeup.generation).where(_claimable(at))
            .order_by(RunWakeup.due_at).limit(limit).with_for_update(skip_locked=True)
        ).all()
        for row in rows:
            result = session.execute(
                update(RunWakeup)
                .where(RunWakeup.run_id == row.run_id, RunWakeup.key == row.key, _claimable(at))
                .values(lease_owner=owner, lease_expires_at=at + lease_seconds, attempts=RunWakeup.attempts + 1)
                .returning(RunWakeup.reason, RunWakeup.payload, RunWakeup.generation, RunWakeup.attempts)
            ).first()
            if result is not None:
                claimed.append(Wakeup(row.run_id, row.key, result.reason, dict(result.payload or {}),
                                      result.generation, result.attempts, owner))
    return claimed


def _held(wakeup: Wakeup) -> ColumnElement[bool]:
    return and_(RunWakeup.run_id == wakeup.run_id, RunWakeup.key == wakeup.key,
                RunWakeup.lease_owner == wakeup.owner)


def finish_wakeup(db: Database, wakeup: Wakeup) -> bool:
    """Remove a wake-up its holder acted on; True when removed.

    One recorded again while it was acted on stays, released for the next pass; one whose
    lease went to another owner is left to that owner.
    """
    with db.begin() as session:
        result = session.execute(
            delete(RunWakeup).where(_held(wakeup), RunWakeup.generation == wakeup.generation)
        )
        removed = cast(CursorResult[Any], result).rowcount
        if not removed:
            session.execute(update(RunWakeup).where(_held(wakeup))
                            .values(lease_owner=None, lease_expires_at=None, attempts=0))
        return bool(removed)


def retry_wakeup(db: Database, wakeup: Wakeup, *, at: float) -> None:
    """Release a wake-up its holder could not act on, due again at ``at``."""
    with db.begin() as session:
        session.execute(update(RunWakeup).where(_held(wakeup))
                        .values(lease_owner=None, lease_expires_at=None, due_at=at))


def drop_wakeup(db: Database, wakeup: Wakeup) -> None:
    """Remove a wake-up that will never be acted on (its run is gone, or it failed too often)."""
    with db.begin() as session:
        session.execute(delete(RunWakeup).where(_held(wakeup)))
