"""Status changes: fenced ones by the lease holder, unfenced ones by operators, webhooks and the reconciler."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from agentz_app.domain.states import LEASED, LIVE, RETRYABLE, TERMINAL, Status, can_transition
from agentz_app.errors import IllegalTransition, LeaseLost, NotFound, StoreError
from agentz_app.store import claim_sql
from agentz_app.store.db import Database
from agentz_app.store.models import Event, Run, now
from agentz_app.store.queue_core import (
    ISSUE_ONLY,
    RETRIES,
    Clock,
    Lease,
    check_fields,
    clean_error,
    drop_claims,
    drop_claims_for,
    locked,
    record_event,
    resume_status,
    take_issue_claim,
    wake_deferred_in,
    write_fenced,
)
from agentz_app.store.single_statements import SingleStatements, driver_rows


@dataclass(frozen=True)
class Moved:
    """A run a fenced change just moved: what the holder needs without loading the whole run.

    ``from_status`` is empty where the database could not return it in the same statement."""

    run_id: str
    repo: str
    issue_number: int
    from_status: str
    status: str
    freed: bool
    deferred: bool


def _drop_for(goal: Status) -> str:
    """Which claims moving to ``goal`` gives back (see :func:`.queue_core.drop_claims_for`)."""
    if goal == Status.DONE:
        return claim_sql.DROP_ISSUE
    if goal in TERMINAL:
        return claim_sql.DROP_ALL
    if goal in ISSUE_ONLY:
        return claim_sql.DROP_NON_ISSUE
    return claim_sql.DROP_NONE


def _move_effects(goal: Status, stamp: float, *, error: str | None, release: bool = False) -> dict[str, Any]:
    """What a fenced move to ``goal`` writes besides the status: the error, the dropped lease
    (on ``release`` or a status that holds none) and the finishing time of a terminal status."""
    values: dict[str, Any] = {}
    if error is not None:
        values["error"] = error
    if release or goal not in LEASED:
        values.update(lease_owner=None, lease_expires_at=None)
    if goal in TERMINAL:
        values["finished_at"] = stamp
    return values


class Transitions:
    """Move runs between statuses; every change appends its event in the same transaction."""

    def __init__(
        self,
        db: Database,
        *,
        clock: Clock = now,
        secret_values: Sequence[str] = (),
        single_statements: SingleStatements | None = None,
    ) -> None:
        """``secret_values`` (with every secret recognised by shape) are redacted from stored errors;
        ``single_statements`` sends the PostgreSQL completions (its own connection per thread unless shared)."""
        self.db = db
        self.clock = clock
        self.secret_values = tuple(secret_values)
        # Single statements that are their own transaction (PostgreSQL autocommit).
        self.single_statements = single_statements if single_statements is not None else SingleStatements(db.engine)

    def _clean_error(self, error: str | None) -> str | None:
        return clean_error(error, self.secret_values)

    def _wake(self, repo: str) -> None:
        """Wake the deferred runs of ``repo`` in a transaction of their own."""
        with self.db.begin() as session:
            wake_deferred_in(session, repo, clock=self.clock)

    def transition(
        self,
        lease: Lease,
        target: str,
        *,
        stage: str | None = None,
        error: str | None = None,
        release: bool = False,
        event: dict[str, Any] | None = None,
        **fields: Any,
    ) -> Run:
        """Fenced status change + event row; ``release`` drops the lease (and for
        terminal statuses all claims). Raises LeaseLost or IllegalTransition.

        Moving to a status that needs no lease (ready, queued, waiting_checks,
        deferred, terminal ...) always drops the lease; moving to queued or deferred
        also gives back the run's file and module claims, so two waiting runs never
        block each other. The run is loaded after the change commits (see :meth:`complete`).
        """
        self.complete(lease, target, stage=stage, error=error, release=release, event=event, **fields)
        return self.get_run(lease.run_id)

    def complete(
        self,
        lease: Lease,
        target: str,
        *,
        stage: str | None = None,
        error: str | None = None,
        release: bool = False,
        event: dict[str, Any] | None = None,
        **fields: Any,
    ) -> Moved:
        """The fenced change of :meth:`transition` without loading the run afterwards.

        One statement on PostgreSQL (update, claim release and event in CTEs); on SQLite
        the event is inserted only while the lease holds, then the run is updated. Freed
        claims wake the repository's deferred runs in the same transaction.
        """
        check_fields(fields)
        goal = Status(target)
        error = self._clean_error(error)
        stamp = self.clock()
        values: dict[str, Any] = {"status": goal.value, "updated_at": stamp, **fields}
        if stage is not None:
            values["stage"] = stage
        values.update(_move_effects(goal, stamp, error=error, release=release))
        payload = {key: value for key, value in
                   {"actor": lease.owner, "attempt": lease.attempt, "stage": stage, "error": error, **(event or {})}
                   .items() if value is not None}
        columns = tuple(sorted(values))
        drop = _drop_for(goal)
        params: dict[str, Any] = {
            "lease_run_id": lease.run_id, "lease_attempt": lease.attempt, "owner": lease.owner,
            "event_payload": payload, "stamp": stamp, **claim_sql.completion_params(values),
        }
        if self.db.is_sqlite:
            with self.db.engine.begin() as connection:
                moved = self._complete_sqlite(connection, params, columns, drop, goal)
                if moved is None:
                    self._refuse(connection, lease, goal)
                if moved.freed and moved.deferred:
                    self._wake_in(connection, [moved.repo])
            return moved
        # One statement is its own transaction: no BEGIN and COMMIT round trips.
        rows = self.single_statements.rows(claim_sql.pg_complete(columns, drop, goal.value), params)
        if not rows:
            with self.db.engine.connect() as connection:
                self._refuse(connection, lease, goal)
        row = rows[0]
        moved = Moved(row.id, row.repo, row.issue_number, row.from_status, row.status,
                      freed=bool(row.freed) and goal != Status.DONE, deferred=bool(row.deferred))
        if moved.freed and moved.deferred:
            # Rare (the repository has deferred runs): wake them right after; the
            # reconciler's sweep covers a crash in between.
            self._wake(moved.repo)
        return moved

    def _wake_in(self, connection: Connection, repos: Iterable[str]) -> None:
        """Wake deferred runs of ``repos`` inside the transaction of ``connection``."""
        with Session(bind=connection) as session:
            for repo in sorted(set(repos)):
                wake_deferred_in(session, repo, clock=self.clock)
            session.flush()

    @staticmethod
    def _complete_sqlite(connection: Connection, params: dict[str, Any], columns: tuple[str, ...],
                         drop: str, goal: Status) -> Moved | None:
        if not driver_rows(connection, claim_sql.sqlite_complete_event(goal.value), params):
            return None
        [row] = driver_rows(connection, claim_sql.sqlite_complete_run(columns, goal.value), params)
        freed = deferred = False
        if drop != claim_sql.DROP_NONE:
            dropped = driver_rows(connection, claim_sql.sqlite_drop_claims(drop), {**params, "repo": row.repo})
            freed = bool(dropped) and drop != claim_sql.DROP_ISSUE
            deferred = freed and bool(dropped[0].deferred)
        return Moved(row.id, row.repo, row.issue_number, "", row.status, freed=freed, deferred=deferred)

    @staticmethod
    def _refuse(connection: Connection, lease: Lease, goal: Status) -> NoReturn:
        """Raise why a fenced change matched no row: the lease is lost, or the move is illegal."""
        row = connection.execute(
            select(Run.attempt, Run.lease_owner, Run.status).where(Run.id == lease.run_id)
        ).first()
        if row is None or row.attempt != lease.attempt or row.lease_owner != lease.owner:
            raise LeaseLost(lease.run_id, lease.attempt)
        raise IllegalTransition(lease.run_id, row.status, goal)

    def get_run(self, run_id: str) -> Run:
        """The run, or :class:`NotFound` (a read after a committed change)."""
        with self.db.read() as session:
            run = session.get(Run, run_id)
        if run is None:
            raise NotFound(f"run {run_id} not found")
        return run

    def transition_many(
        self,
        leases: Sequence[Lease],
        target: str,
        *,
        error: str | None = None,
        event: dict[str, Any] | None = None,
    ) -> tuple[list[Run], list[Lease]]:
        """Move several held runs to ``target`` in one transaction; returns (moved runs, lost leases).

        Leases that are no longer held are skipped and returned, not raised; an
        illegal transition for any held run raises IllegalTransition and changes nothing.
        The runs are loaded after the change commits (see :meth:`complete_many`).
        """
        moved, lost = self.complete_many(leases, target, error=error, event=event)
        if not moved:
            return [], lost
        with self.db.read() as session:
            runs = {run.id: run for run in session.scalars(select(Run).where(Run.id.in_([m.run_id for m in moved])))}
        return [runs[m.run_id] for m in moved], lost

    def complete_many(
        self,
        leases: Sequence[Lease],
        target: str,
        *,
        error: str | None = None,
        event: dict[str, Any] | None = None,
    ) -> tuple[list[Moved], list[Lease]]:
        """The fenced changes of :meth:`transition_many` without loading the runs afterwards.

        One statement on PostgreSQL; on SQLite a locked read, the update, the claim
        release and the events. Freed claims wake deferred runs in the same transaction.
        """
        goal = Status(target)
        error = self._clean_error(error)
        if not leases:
            return [], []
        stamp = self.clock()
        values: dict[str, Any] = {"status": goal.value, "updated_at": stamp,
                                  **_move_effects(goal, stamp, error=error)}
        extra = {key: value for key, value in {"error": error, **(event or {})}.items() if value is not None}
        columns = tuple(sorted(values))
        drop = _drop_for(goal)
        params: dict[str, Any] = {
            "leases": [(lease.run_id, lease.attempt, lease.owner) for lease in leases],
            "lease_ids": [lease.run_id for lease in leases], "lease_attempts": [lease.attempt for lease in leases],
            "lease_owners": [lease.owner for lease in leases],
            "event_payload": extra, "stamp": stamp, **claim_sql.completion_params(values),
        }
        order = {lease.run_id: index for index, lease in enumerate(leases)}
        if self.db.is_sqlite:
            with self.db.engine.begin() as connection:
                moved, held = self._complete_many_sqlite(connection, params, values, drop, goal)
                self._wake_in(connection, [m.repo for m in moved if m.freed and m.deferred])
        else:
            # One statement is its own transaction; nothing moves when any held run may not move.
            rows = self.single_statements.rows(claim_sql.pg_complete_many(columns, drop, goal.value), params)
            held = {row.id for row in rows}
            illegal = next((row for row in rows if not can_transition(row.status, goal)), None)
            if illegal is not None:
                raise IllegalTransition(illegal.id, illegal.status, goal)
            freed = bool(rows and rows[0].freed) and goal != Status.DONE
            moved = [Moved(row.id, row.repo, 0, row.status, goal.value, freed=freed, deferred=bool(row.deferred))
                     for row in rows]
            waiting = {m.repo for m in moved if m.freed and m.deferred}
            for repo in sorted(waiting):
                self._wake(repo)
        moved.sort(key=lambda m: order[m.run_id])
        return moved, [lease for lease in leases if lease.run_id not in held]

    @staticmethod
    def _complete_many_sqlite(connection: Connection, params: dict[str, Any], values: dict[str, Any],
                              drop: str, goal: Status) -> tuple[list[Moved], set[str]]:
        fenced = {(run_id, attempt, owner) for run_id, attempt, owner in params["leases"]}
        rows = connection.execute(
            select(Run.id, Run.repo, Run.status, Run.attempt, Run.lease_owner)
            .where(Run.id.in_([run_id for run_id, _, _ in fenced])).order_by(Run.id)
        ).all()
        held = [row for row in rows if (row.id, row.attempt, row.lease_owner) in fenced]
        for row in held:
            if not can_transition(row.status, goal):
                raise IllegalTransition(row.id, row.status, goal)
        if not held:
            return [], set()
        ids = [row.id for row in held]
        connection.execute(update(Run).where(Run.id.in_(ids)).values(values))
        freed = False
        if drop != claim_sql.DROP_NONE:
            dropping = claim_sql.sqlite_drop_claims_of(drop)
            freed = bool(connection.execute(dropping, {"ids": ids}).rowcount) and drop != claim_sql.DROP_ISSUE
        connection.execute(insert(Event), [
            {"run_id": row.id, "kind": "transition", "from_status": row.status, "to_status": goal.value,
             "created_at": params["stamp"],
             "payload": {"actor": row.lease_owner, "attempt": row.attempt, **params["event_payload"]}}
            for row in held
        ])
        repos = {row.repo for row in held}
        waiting = {repo for repo in repos if freed
                   and connection.execute(claim_sql.has_deferred(), {"repo": repo}).scalar()}
        return [Moved(row.id, row.repo, 0, row.status, goal.value, freed=freed, deferred=row.repo in waiting)
                for row in held], set(ids)

    def defer(self, lease: Lease, conflicts: Collection[str], *, reason: str = "claims conflict",
              stage: str | None = None) -> Run:
        """Move a claimed run to ``deferred`` after :meth:`.ResourceClaims.claim_resources` reported conflicts;
        ``stage`` says where it continues once woken."""
        return self.transition(lease, Status.DEFERRED, release=True, stage=stage,
                               event={"reason": reason, "conflicts": sorted(conflicts)})

    def update(self, lease: Lease, **fields: Any) -> Run:
        """Fenced update of run fields (plan, session ids, PR number, cost ...).

        A new checkpoint is also recorded as a ``checkpoint`` event: the reconciler compares
        it with the last reported progress to tell whether a lost attempt's work is saved.
        """
        check_fields(fields)
        with self.db.begin() as session:
            run = write_fenced(session, lease, {**fields, "updated_at": self.clock()})
            if fields.get("checkpoint_sha"):
                record_event(session, self.clock(), run.id, "checkpoint", from_status=run.status,
                             to_status=run.status, sha=fields["checkpoint_sha"], attempt=lease.attempt)
            return run

    def add_cost(self, lease: Lease, cost_usd: float, tokens: int) -> Run:
        """Add an agent call's cost and tokens to the run (fenced)."""
        if cost_usd < 0 or tokens < 0:
            raise StoreError("cost and tokens must not be negative")
        with self.db.begin() as session:
            return write_fenced(
                session, lease,
                {"cost_usd": Run.cost_usd + cost_usd, "tokens": Run.tokens + tokens, "updated_at": self.clock()},
            )

    def add_leased_event(self, lease: Lease, kind: str, **payload: Any) -> None:
        """Append an event while ``lease`` still holds the run (fenced: LeaseLost otherwise); the run is unchanged."""
        with self.db.begin() as session:
            write_fenced(session, lease, {"lease_owner": Run.lease_owner})
            record_event(session, self.clock(), lease.run_id, kind, **payload)

    def _move_in(
        self,
        session: Session,
        run: Run,
        goal: Status,
        *,
        reason: str,
        actor: str,
        kind: str = "transition",
        event: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> Run:
        current = run.status
        stamp = self.clock()
        values: dict[str, Any] = {
            "status": goal, "attempt": run.attempt + 1, "lease_owner": None, "lease_expires_at": None,
            "updated_at": stamp, **fields,
        }
        if goal in TERMINAL:
            values["finished_at"] = stamp
        elif current in TERMINAL:
            values["finished_at"] = None
            take_issue_claim(session, run, clock=self.clock)
        session.execute(
            update(Run).where(Run.id == run.id, Run.attempt == run.attempt).values(**values)
            .execution_options(synchronize_session=False)
        )
        freed = drop_claims_for(session, run, goal)
        record_event(session, self.clock(), run.id, kind, from_status=current, to_status=goal, actor=actor,
                     reason=reason, attempt=run.attempt + 1, previous_owner=run.lease_owner, **dict(event or {}))
        if freed:
            wake_deferred_in(session, run.repo, clock=self.clock)
        session.flush()
        return locked(session, run.id)

    def set_status_in(
        self,
        session: Session,
        run_id: str,
        target: str,
        *,
        reason: str,
        actor: str = "system",
        expected_attempt: int | None = None,
        guard: Callable[[Run], bool] | None = None,
        event: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> Run:
        """:meth:`set_status` inside the caller's transaction (a savepoint per attempt, so a lost race
        for the issue claim rolls back only this change before it re-checks)."""
        check_fields(fields)
        goal = Status(target)
        for _ in range(RETRIES):
            try:
                with session.begin_nested():
                    run = locked(session, run_id)
                    if expected_attempt is not None and run.attempt != expected_attempt:
                        raise LeaseLost(run_id, expected_attempt)
                    if guard is not None and not guard(run):
                        raise LeaseLost(run_id, run.attempt)
                    if not can_transition(run.status, goal):
                        raise IllegalTransition(run_id, run.status, goal)
                    return self._move_in(session, run, goal, reason=reason, actor=actor, event=event, **fields)
            except IntegrityError:
                continue  # a concurrent enqueue took the issue claim; re-check
        raise StoreError(f"run {run_id}: could not change status, concurrent updates")

    def set_status(
        self,
        run_id: str,
        target: str,
        *,
        reason: str,
        actor: str = "system",
        expected_attempt: int | None = None,
        guard: Callable[[Run], bool] | None = None,
        event: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> Run:
        """Unfenced status change for operators, webhooks and the reconciler.

        Bumps ``attempt`` so any current lease holder's next write raises LeaseLost,
        clears the lease, and releases claims on terminal statuses. With
        ``expected_attempt`` (or a ``guard`` evaluated on the locked row) the change
        only happens if the run is still as the caller saw it, LeaseLost otherwise,
        so a decision made on a stale read is dropped. ``event`` adds to the payload.
        """
        with self.db.begin() as session:
            return self.set_status_in(session, run_id, target, reason=reason, actor=actor,
                                      expected_attempt=expected_attempt, guard=guard, event=event, **fields)

    def cancel_in(self, session: Session, run_id: str, *, reason: str, actor: str = "operator",
                  **fields: Any) -> Run:
        """:meth:`cancel` inside the caller's transaction."""
        return self.set_status_in(session, run_id, Status.CANCELLED, reason=reason, actor=actor, **fields)

    def cancel(self, run_id: str, *, reason: str, actor: str = "operator", **fields: Any) -> Run:
        """Cancel a run: its holder loses the lease at its next write and all claims are freed."""
        with self.db.begin() as session:
            return self.cancel_in(session, run_id, reason=reason, actor=actor, **fields)

    def resume_in(self, session: Session, run_id: str, *, reason: str = "resumed by operator",
                  actor: str = "operator", trigger_ref: str | None = None) -> Run:
        """:meth:`resume` inside the caller's transaction."""
        run = locked(session, run_id)
        status = Status(run.status)
        if trigger_ref is not None:
            run.trigger_ref = trigger_ref
        if status in RETRYABLE:
            return self._move_in(session, run, Status.QUEUED, reason=reason, actor=actor,
                                 infra_attempts=0, error=None, trigger_ref=run.trigger_ref)
        if status == Status.DEFERRED:
            return self._move_in(session, run, resume_status(run), reason=reason, actor=actor)
        expired = run.lease_owner is None or (run.lease_expires_at or 0.0) < self.clock()
        if status in LEASED and expired:
            goal = Status.QUEUED if status == Status.PLANNING else Status.READY
            return self._move_in(session, run, goal, reason=reason, actor=actor,
                                 stage=run.stage or (None if goal == Status.QUEUED else status))
        if status in LEASED:
            raise StoreError(
                f"run {run_id} is {status} and leased by {run.lease_owner}; cancel it to stop it"
            )
        raise StoreError(f"run {run_id} is {status}; only failed, needs_human, cancelled, deferred "
                         "or stuck runs can be resumed")

    def resume(self, run_id: str, *, reason: str = "resumed by operator", actor: str = "operator",
               trigger_ref: str | None = None) -> Run:
        """Make a failed, needs_human, cancelled, deferred or stuck run claimable again.

        Retryable runs go back to ``queued`` with their infrastructure attempts reset;
        a deferred run goes to its resume status; a run in a leased status whose lease
        expired (or that nobody holds) goes where the reconciler would send it.
        """
        with self.db.begin() as session:
            return self.resume_in(session, run_id, reason=reason, actor=actor, trigger_ref=trigger_ref)

    def adopt_pr(self, run_id: str, pr_number: int, *, head_sha: str | None, branch: str | None,
                 reason: str, actor: str = "reconciler") -> Run:
        """Attach someone else's open PR to a live run and wait for its checks.

        The one deliberate jump outside the state machine: any live run without a PR
        moves to ``waiting_checks``; its lease is revoked and file/module claims freed.
        """
        with self.db.begin() as session:
            run = locked(session, run_id)
            if run.status not in LIVE or run.pr_number is not None:
                raise IllegalTransition(run_id, run.status, Status.WAITING_CHECKS)
            drop_claims(session, run, keep_issue=True)
            return self._move_in(session, run, Status.WAITING_CHECKS, reason=reason, actor=actor,
                                       kind="adopted", pr_number=pr_number, head_sha=head_sha, branch=branch)

    def add_event_in(self, session: Session, run_id: str | None, kind: str, **payload: Any) -> None:
        """:meth:`add_event` inside the caller's transaction."""
        record_event(session, self.clock(), run_id, kind, **payload)

    def add_event(self, run_id: str | None, kind: str, **payload: Any) -> None:
        """Append a free-form event (notable facts that are not status changes)."""
        with self.db.begin() as session:
            self.add_event_in(session, run_id, kind, **payload)
