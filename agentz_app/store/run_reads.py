"""Read models over runs, claims and events: lookups, listings and the reconciler's queries."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

from sqlalchemy import and_, or_, select

from agentz_app.domain.states import CLAIMABLE_BY_WORKER, LEASED, LIVE, TERMINAL, Status
from agentz_app.errors import NotFound
from agentz_app.store.db import Database
from agentz_app.store.models import Claim, Event, Run, now
from agentz_app.store.queue_core import Clock
from agentz_app.timestamps import github_time

# Statuses whose runs a CI or review webhook may wake by head SHA.
WAITING_ON_SHA = frozenset({Status.WAITING_CHECKS, Status.DONE})
# Statuses whose start means the agent is changing the code (progress a checkpoint must cover).
_CODE_STAGES = (Status.DEVELOPING, Status.FIXING)


def _is_progress(kind: str, to_status: str | None, payload: Mapping[str, Any] | None) -> bool:
    if kind == "agent_call":
        return (payload or {}).get("role") == "developer"
    return kind in ("transition", "claimed") and to_status in _CODE_STAGES


class RunReads:
    """Read-only queries (deferred ``BEGIN``: they never take SQLite's write lock)."""

    def __init__(self, db: Database, *, clock: Clock = now) -> None:
        self.db = db
        self.clock = clock

    def get(self, run_id: str) -> Run:
        """The run, or :class:`NotFound`."""
        with self.db.read() as session:
            run = session.get(Run, run_id)
        if run is None:
            raise NotFound(f"run {run_id} not found")
        return run

    def find(self, prefix: str) -> Run:
        """The run whose id is or starts with ``prefix`` (unique), or :class:`NotFound`."""
        if not re.fullmatch(r"[0-9a-f]{1,32}", prefix):
            raise NotFound(f"run {prefix!r} not found (ids are hex)")
        with self.db.read() as session:
            found = session.scalars(select(Run).where(Run.id.startswith(prefix)).limit(2)).all()
        if len(found) != 1:
            raise NotFound(f"run {prefix} not found" if not found else f"run id prefix {prefix} is ambiguous")
        return found[0]

    def live_run_for_issue(self, repo: str, issue_number: int) -> Run | None:
        """The live run of an issue, if any."""
        with self.db.read() as session:
            return session.scalars(
                select(Run)
                .where(Run.repo == repo, Run.issue_number == issue_number, Run.status.in_(LIVE))
                .order_by(Run.created_at)
                .limit(1)
            ).first()

    def requested_since(self, repo: str, issue_number: int, requested_at: str) -> Run | None:
        """The issue's newest run if it was enqueued from an issue state no older than ``requested_at``.

        Both times are GitHub's. A label or command whose webhook arrives late, or is
        processed again after a crash, may already have been answered by that run (the
        resync or the scheduler saw the same state first): such a request starts nothing.
        """
        asked = github_time(requested_at)
        if not asked:
            return None
        with self.db.read() as session:
            latest = session.scalars(
                select(Run).where(Run.repo == repo, Run.issue_number == issue_number)
                .order_by(Run.created_at.desc()).limit(1)
            ).first()
            if latest is None:
                return None
            enqueued = session.scalars(
                select(Event).where(Event.run_id == latest.id, Event.kind == "enqueued").limit(1)
            ).first()
        seen = github_time((enqueued.payload if enqueued is not None else {}).get("issue_updated_at"))
        return latest if seen >= asked else None

    def list_runs(
        self, *, statuses: Collection[str] | None = None, limit: int = 200, repo: str | None = None
    ) -> list[Run]:
        """Runs, newest first, optionally filtered by status and repository."""
        statement = select(Run).order_by(Run.created_at.desc(), Run.id).limit(limit)
        if statuses is not None:
            statement = statement.where(Run.status.in_([Status(s) for s in statuses]))
        if repo is not None:
            statement = statement.where(Run.repo == repo)
        with self.db.read() as session:
            return list(session.scalars(statement).all())

    def claims_of(self, run_id: str) -> list[str]:
        """The resources a run holds, sorted."""
        with self.db.read() as session:
            return sorted(session.scalars(select(Claim.resource).where(Claim.run_id == run_id)).all())

    def events(self, run_id: str) -> list[Event]:
        """A run's event timeline, oldest first."""
        with self.db.read() as session:
            return list(session.scalars(select(Event).where(Event.run_id == run_id).order_by(Event.id)).all())

    def runs_waiting_on_sha(
        self, repo: str, head_sha: str, *, statuses: Collection[str] = WAITING_ON_SHA
    ) -> list[Run]:
        """Runs of ``repo`` whose pushed head is ``head_sha`` and that CI results can wake."""
        with self.db.read() as session:
            return list(
                session.scalars(
                    select(Run)
                    .where(Run.repo == repo, Run.head_sha == head_sha, Run.status.in_(list(statuses)))
                    .order_by(Run.created_at)
                ).all()
            )

    def progress_is_saved(self, run_id: str) -> bool:
        """Whether the run's checkpoint is newer than its last reported progress: a developer
        call that finished, or the start of a stage that changes the code."""
        with self.db.read() as session:
            run = session.get(Run, run_id)
            if run is None or not run.checkpoint_sha:
                return False
            rows = session.execute(
                select(Event.id, Event.kind, Event.to_status, Event.payload)
                .where(Event.run_id == run_id, Event.kind.in_(("checkpoint", "agent_call", "transition", "claimed")))
            ).all()
        saved = max((row.id for row in rows if row.kind == "checkpoint"), default=None)
        progressed = max((row.id for row in rows if _is_progress(row.kind, row.to_status, row.payload)), default=None)
        return saved is not None and (progressed is None or saved > progressed)

    def expired(self, now: float | None = None) -> list[Run]:
        """Runs whose lease expired, plus runs in leased statuses that nobody holds or can claim."""
        moment = self.clock() if now is None else now
        stuck = LEASED - CLAIMABLE_BY_WORKER
        with self.db.read() as session:
            return list(
                session.scalars(
                    select(Run)
                    .where(
                        or_(
                            and_(Run.lease_owner.is_not(None), Run.lease_expires_at < moment),
                            and_(Run.lease_owner.is_(None), Run.status.in_(stuck)),
                        )
                    )
                    .order_by(Run.created_at)
                ).all()
            )

    def leased(self) -> list[Run]:
        """Runs that currently have a lease owner (expired or not)."""
        with self.db.read() as session:
            return list(session.scalars(select(Run).where(Run.lease_owner.is_not(None))).all())

    def stale_on_github(self, *, quiet_since: float, limit: int = 20) -> list[Run]:
        """Runs whose GitHub view is behind their state and that no reporter holds, oldest change first.

        A run still changing (updated after ``quiet_since``) waits, so quick transitions cost
        one edit; a run never shown and a finished run are due at once.
        """
        moment = self.clock()
        behind = or_(Run.github_synced_at.is_(None), Run.github_synced_at < Run.updated_at)
        free = or_(Run.report_claimed_until.is_(None), Run.report_claimed_until < moment)
        due = or_(Run.updated_at <= quiet_since, Run.github_synced_at.is_(None), Run.status.in_(TERMINAL))
        with self.db.read() as session:
            return list(session.scalars(
                select(Run).where(behind, free, due).order_by(Run.updated_at, Run.id).limit(limit)
            ).all())
