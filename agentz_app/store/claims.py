"""Claims and leases: take runs atomically, extend, release and revoke leases."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import Connection, select, update

from agentz_app.domain.states import Status, can_transition
from agentz_app.errors import IllegalTransition, LeaseLost, StoreError
from agentz_app.store import claim_sql
from agentz_app.store.db import Database
from agentz_app.store.models import Run, now
from agentz_app.store.queue_core import Clock, Lease, check_fields, locked, record_event, write_fenced
from agentz_app.store.single_statements import SingleStatements, driver_rows

_PER_REPO_CLAIM_LOCK = 72787266  # pg advisory lock held by claims that honour a per-repository limit


@cache
def _claimable(statuses: tuple[str, ...], target: str | None) -> tuple[str, ...]:
    """The statuses of ``statuses`` a claim may take: with a ``target``, those that may move to it."""
    wanted = tuple(Status(status).value for status in statuses)
    if target is not None:
        wanted = tuple(s for s in wanted if s == target or can_transition(Status(s), Status(target)))
        if not wanted:
            raise IllegalTransition("*", ",".join(sorted(map(str, statuses))), target)
    if not wanted:
        raise StoreError("a claim needs at least one status")
    return wanted


@dataclass(frozen=True)
class Claimed:
    """A run just claimed: what the claimer needs before it loads the whole run."""

    run_id: str
    repo: str
    issue_number: int
    from_status: str
    status: str
    lease: Lease


class _ClaimRow(NamedTuple):
    id: str
    repo: str
    issue_number: int
    from_status: str
    status: str
    attempt: int


class LeaseClaims:
    """Who holds which run: claims set a lease and bump the fencing token."""

    def __init__(
        self,
        db: Database,
        *,
        lease_seconds: float = 60.0,
        clock: Clock = now,
        single_statements: SingleStatements | None = None,
    ) -> None:
        """``single_statements`` sends the PostgreSQL claim (its own connection per thread unless shared)."""
        if lease_seconds <= 0:
            raise StoreError("lease_seconds must be positive")
        self.db = db
        self.lease_seconds = lease_seconds
        self.clock = clock
        # Single statements that are their own transaction (PostgreSQL autocommit).
        self.single_statements = single_statements if single_statements is not None else SingleStatements(db.engine)

    def claim(
        self,
        owner: str,
        *,
        statuses: Collection[str],
        target: str | None = None,
        per_repo_limit: int | None = None,
        run_id: str | None = None,
    ) -> tuple[Run, Lease] | None:
        """Atomically take the oldest unleased run in ``statuses``.

        Sets the lease, increments ``attempt`` and moves it to ``target`` (or keeps its
        status when None); statuses that cannot move to ``target`` are not considered.
        Returns None when nothing is claimable. With ``per_repo_limit``, runs of a
        repository that already has that many leased runs are skipped; with
        ``run_id`` only that run is considered. The run is loaded after the claim commits.
        """
        claimed = self.claim_batch(owner, statuses=statuses, target=target, limit=1, per_repo_limit=per_repo_limit,
                                   run_id=run_id)
        return claimed[0] if claimed else None

    def claim_batch(
        self,
        owner: str,
        *,
        statuses: Collection[str],
        target: str | None = None,
        limit: int = 10,
        per_repo_limit: int | None = None,
        run_id: str | None = None,
    ) -> list[tuple[Run, Lease]]:
        """Claim up to ``limit`` runs in one transaction, oldest first; each gets its own lease.

        Same rules as :meth:`claim`; ``per_repo_limit`` also counts the runs this
        batch takes. The runs are loaded after the claim commits (see :meth:`take`).
        """
        claimed = self.take(owner, statuses=statuses, target=target, limit=limit, per_repo_limit=per_repo_limit,
                            run_id=run_id)
        if not claimed:
            return []
        with self.db.read() as session:
            runs = {run.id: run for run in session.scalars(select(Run).where(Run.id.in_([c.run_id for c in claimed])))}
        return [(runs[c.run_id], c.lease) for c in claimed]

    def take(
        self,
        owner: str,
        *,
        statuses: Collection[str],
        target: str | None = None,
        limit: int = 1,
        per_repo_limit: int | None = None,
        run_id: str | None = None,
    ) -> list[Claimed]:
        """The claim itself: lease up to ``limit`` runs and log a ``claimed`` event for each.

        One statement on PostgreSQL, two under SQLite's ``BEGIN IMMEDIATE``; returns what
        the claimer needs to hold them (no ORM object). Rules as in :meth:`claim`.
        """
        if not owner:
            raise StoreError("a claim needs a non-empty owner")
        if limit < 1:
            raise StoreError("a claim batch needs a positive limit")
        wanted = _claimable(tuple(statuses), target)
        goal = None if target is None else Status(target).value
        stamp = self.clock()
        params: dict[str, Any] = {"limit": limit, "owner": owner, "stamp": stamp, "expires": stamp + self.lease_seconds}
        if run_id is not None:
            params["lease_run_id"] = run_id
        if per_repo_limit is not None:
            params["per_repo_limit"] = per_repo_limit
        shape = {"by_id": run_id is not None, "per_repo": per_repo_limit is not None}
        if self.db.is_sqlite:
            with self.db.engine.begin() as connection:
                rows = self._take_sqlite(connection, params, wanted, goal, shape)
        elif per_repo_limit is not None:
            with self.db.engine.begin() as connection:
                # Count and claim under one lock: with SKIP LOCKED alone, two workers could each
                # see a repository below its limit and both take a run of it. (SQLite's
                # BEGIN IMMEDIATE already serialises claims.)
                connection.execute(claim_sql.advisory_lock(), {"key": _PER_REPO_CLAIM_LOCK})
                rows = list(connection.execute(claim_sql.pg_claim(wanted, goal, **shape), params))
        else:
            # One statement is its own transaction: no BEGIN and COMMIT round trips.
            rows = self.single_statements.rows(claim_sql.pg_claim(wanted, goal, **shape), params)
        return [Claimed(run_id=row.id, repo=row.repo, issue_number=row.issue_number, from_status=row.from_status,
                        status=row.status, lease=Lease(row.id, row.attempt, owner)) for row in rows]

    @staticmethod
    def _take_sqlite(connection: Connection, params: dict[str, Any], statuses: tuple[str, ...], target: str | None,
                     shape: dict[str, bool]) -> list[Any]:
        logged = driver_rows(connection, claim_sql.sqlite_claim_events(statuses, target, **shape), params)
        if not logged:
            return []
        moves = {row.run_id: row for row in logged}
        leased = driver_rows(connection, claim_sql.sqlite_claim_runs(target),
                             {**params, "ids": list(moves)})
        if len(leased) != len(logged):
            raise StoreError("runs changed while being claimed")
        return [_ClaimRow(row.id, row.repo, row.issue_number, moves[row.id].from_status, moves[row.id].to_status,
                          row.attempt) for row in sorted(leased, key=lambda row: (row.created_at, row.id))]

    def heartbeat(self, lease: Lease) -> float:
        """Extend the lease; returns the new expiry or raises :class:`LeaseLost`."""
        stamp = self.clock()
        expires = stamp + self.lease_seconds
        with self.db.begin() as session:
            write_fenced(session, lease, {"lease_expires_at": expires, "heartbeat_at": stamp})
        return expires

    def given_back(self, lease: Lease) -> bool:
        """Whether the holder of ``lease`` gave the run back itself: nobody holds it and nobody
        fenced it since (every takeover or revocation bumps ``attempt``)."""
        with self.db.read() as session:
            row = session.execute(select(Run.attempt, Run.lease_owner).where(Run.id == lease.run_id)).first()
        return row is not None and row.attempt == lease.attempt and row.lease_owner is None

    def release(self, lease: Lease) -> None:
        """Drop the lease without a status change (fenced)."""
        with self.db.begin() as session:
            run = write_fenced(
                session, lease, {"lease_owner": None, "lease_expires_at": None, "updated_at": self.clock()}
            )
            record_event(session, self.clock(), run.id, "released", from_status=run.status,
                         to_status=run.status, owner=lease.owner, attempt=lease.attempt)

    def revoke_lease(
        self,
        run_id: str,
        *,
        reason: str,
        actor: str = "reconciler",
        guard: Callable[[Run], bool] | None = None,
        **fields: Any,
    ) -> Run:
        """Take the lease away without a status change; bumps ``attempt`` to fence the holder."""
        check_fields(fields)
        with self.db.begin() as session:
            run = locked(session, run_id)
            if guard is not None and not guard(run):
                raise LeaseLost(run_id, run.attempt)
            session.execute(
                update(Run).where(Run.id == run.id, Run.attempt == run.attempt)
                .values(attempt=run.attempt + 1, lease_owner=None, lease_expires_at=None, updated_at=self.clock(),
                        **fields)
                .execution_options(synchronize_session=False)
            )
            record_event(session, self.clock(), run.id, "lease_revoked", from_status=run.status,
                         to_status=run.status, actor=actor, reason=reason, attempt=run.attempt + 1,
                         previous_owner=run.lease_owner)
            session.flush()
            return locked(session, run.id)
