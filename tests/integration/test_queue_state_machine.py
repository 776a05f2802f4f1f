"""Model-based test of the run queue: random enqueue/claim/heartbeat/expire/reconcile/cancel/complete
sequences on SQLite and PostgreSQL, checking the queue's invariants after every step."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import ClassVar

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import select, text

from agentz_app.config import Settings
from agentz_app.domain.states import CLAIMABLE_BY_PLANNER, CLAIMABLE_BY_WORKER, LEASED, LIVE, TERMINAL, Status
from agentz_app.errors import IllegalTransition, LeaseLost, StoreError
from agentz_app.reconciler import reconcile_once
from agentz_app.store.db import Database
from agentz_app.store.models import Claim, Event, Run
from agentz_app.store.runs import Lease, RunQueue, file_resource, issue_resource
from tests.fakes import FakeClock

FILES = [file_resource("o/r", name) for name in ("a.py", "b.py", "c.py")]


class QueueMachine(RuleBasedStateMachine):
    """Random queue operations; :func:`queue_machine` binds it to a database and settings."""

    db: ClassVar[Database]
    app_settings: ClassVar[Settings]

    def __init__(self) -> None:
        super().__init__()
        with self.db.begin() as session:
            for table in ("events", "claims", "runs"):
                session.execute(text(f"DELETE FROM {table}"))
        self.clock = FakeClock()
        self.queue = RunQueue(self.db, lease_seconds=60, clock=self.clock)
        self.enqueued: list[str] = []  # creation order: random ids must not steer the draws
        self.leases: dict[str, Lease] = {}
        self.stale: list[Lease] = []
        self.workers = 0

    # Helpers ---------------------------------------------------------

    def _owner(self) -> str:
        self.workers += 1
        return f"worker-{self.workers}"

    def _resync(self) -> None:
        """Leases the queue took away (cancel, reconcile) become stale."""
        for run_id, lease in list(self.leases.items()):
            run = self.queue.reads.get(run_id)
            if run.attempt != lease.attempt or run.lease_owner != lease.owner:
                self.stale.append(self.leases.pop(run_id))

    def _held(self, statuses: frozenset[str]) -> list[Lease]:
        return [self.leases[run_id] for run_id in self.enqueued
                if run_id in self.leases and self.queue.reads.get(run_id).status in statuses]

    def _count(self, statuses: frozenset[Status]) -> int:
        return len(self.queue.reads.list_runs(statuses=statuses))

    def _take(self, claimed: tuple[Run, Lease] | None) -> None:
        if claimed is None:
            return
        run, lease = claimed
        assert run.id not in self.leases, "a run was claimed while its lease was held"
        assert run.lease_owner == lease.owner
        assert run.attempt == lease.attempt
        self.leases[run.id] = lease

    # Rules -------------------------------------------------------------

    @initialize(numbers=st.sets(st.integers(1, 3), min_size=1))
    def start_with_queued_issues(self, numbers: set[int]) -> None:
        for number in sorted(numbers):
            self.enqueue(number)

    @rule(number=st.integers(1, 3))
    def enqueue(self, number: int) -> None:
        self.clock.now += 1
        run, created = self.queue.intake.enqueue("o/r", number)
        if created:
            self.enqueued.append(run.id)
        else:
            assert run.status in LIVE
            assert run.id in self.enqueued

    @precondition(lambda self: self._count(CLAIMABLE_BY_PLANNER) > 0)
    @rule()
    def claim_for_planning(self) -> None:
        self._take(self.queue.leases.claim(self._owner(), statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING))

    @precondition(lambda self: bool(self._held(frozenset({Status.PLANNING}))))
    @rule(data=st.data())
    def finish_planning(self, data: st.DataObject) -> None:
        held = self._held(frozenset({Status.PLANNING}))
        if held:
            lease = data.draw(st.sampled_from(held))
            self.queue.moves.transition(lease, Status.READY, plan={"files": []})
            del self.leases[lease.run_id]

    @precondition(lambda self: self._count(CLAIMABLE_BY_WORKER) > 0)
    @rule()
    def claim_for_work(self) -> None:
        self._take(self.queue.leases.claim(self._owner(), statuses=CLAIMABLE_BY_WORKER, per_repo_limit=3))

    @precondition(lambda self: bool(self._held(frozenset({Status.READY}))))
    @rule(data=st.data(), files=st.sets(st.sampled_from(FILES), min_size=1, max_size=2))
    def start_development(self, data: st.DataObject, files: set[str]) -> None:
        held = self._held(frozenset({Status.READY}))
        if not held:
            return
        lease = data.draw(st.sampled_from(held))
        conflicts = self.queue.resources.claim_resources(lease, files)
        if conflicts:
            assert set(conflicts) <= files
            self.queue.moves.defer(lease, conflicts)
            del self.leases[lease.run_id]
        else:
            assert set(files) <= set(self.queue.reads.claims_of(lease.run_id))
            self.queue.moves.transition(lease, Status.DEVELOPING, stage="developing")

    @precondition(lambda self: bool(self.leases))
    @rule(data=st.data())
    def heartbeat(self, data: st.DataObject) -> None:
        if self.leases:
            lease = data.draw(st.sampled_from([self.leases[r] for r in self.enqueued if r in self.leases]))
            assert self.queue.leases.heartbeat(lease) == self.clock.now + 60

    @rule(seconds=st.sampled_from([5.0, 30.0, 61.0]))
    def advance_clock(self, seconds: float) -> None:
        self.clock.now += seconds

    @rule()
    def reconcile(self) -> None:
        reconcile_once(self.db, self.app_settings, clock=self.clock, is_dead=lambda owner: False)
        self._resync()

    @precondition(lambda self: bool(self.enqueued))
    @rule(data=st.data(), action=st.sampled_from(["cancel", "resume"]))
    def operator(self, data: st.DataObject, action: str) -> None:
        """An operator cancels or resumes a run (one rule, so they do not crowd out the pipeline)."""
        run_id = data.draw(st.sampled_from(self.enqueued))
        if action == "cancel":
            try:
                self.queue.moves.cancel(run_id, reason="test")
            except IllegalTransition:
                assert self.queue.reads.get(run_id).status in {Status.CANCELLED, Status.MERGED}
        else:
            with contextlib.suppress(StoreError):  # not resumable now (live, or issue taken)
                self.queue.moves.resume(run_id)
        self._resync()

    @precondition(lambda self: bool(self._held(frozenset({Status.DEVELOPING}))))
    @rule(data=st.data(), outcome=st.sampled_from([Status.DONE, Status.FAILED]))
    def complete(self, data: st.DataObject, outcome: Status) -> None:
        held = self._held(frozenset({Status.DEVELOPING}))
        if not held:
            return
        lease = data.draw(st.sampled_from(held))
        if outcome == Status.DONE:
            self.queue.moves.transition(lease, Status.SUBMITTING)
        self.queue.moves.transition(lease, outcome, error="boom" if outcome == Status.FAILED else None)
        del self.leases[lease.run_id]

    @precondition(lambda self: bool(self.stale))
    @rule(data=st.data())
    def zombie_write(self, data: st.DataObject) -> None:
        lease = data.draw(st.sampled_from(self.stale))
        before = self.queue.reads.get(lease.run_id)
        attempts: list[Callable[[], object]] = [
            lambda: self.queue.leases.heartbeat(lease),
            lambda: self.queue.moves.update(lease, title="zombie"),
            lambda: self.queue.moves.transition(lease, Status.FAILED),
            lambda: self.queue.resources.claim_resources(lease, FILES[:1]),
        ]
        for write in attempts:
            try:
                write()
            except LeaseLost:
                continue
            raise AssertionError("a stale lease was allowed to write")
        after = self.queue.reads.get(lease.run_id)
        assert (after.status, after.title, after.attempt, after.lease_expires_at) == (
            before.status, before.title, before.attempt, before.lease_expires_at,
        )

    # Invariants --------------------------------------------------------

    @invariant()
    def queue_is_consistent(self) -> None:
        with self.db.read() as session:
            runs = {r.id: r for r in session.scalars(select(Run)).all()}
            claims = list(session.scalars(select(Claim)).all())
            claimed = session.scalars(select(Event).where(Event.kind == "claimed").order_by(Event.id))
            last_claims = {e.run_id: e for e in claimed}
        # Every enqueued run exists and is live or in exactly one terminal state.
        assert set(runs) == set(self.enqueued)
        for run in runs.values():
            assert (run.status in LIVE) != (run.status in TERMINAL)
        self._check_leases(runs, last_claims)
        self._check_claims(runs, claims)

    def _check_leases(self, runs: dict[str, Run], last_claims: dict[str | None, Event]) -> None:
        # At most one live lease per run, and it is the latest claim's.
        for run in runs.values():
            if run.lease_owner is not None:
                assert run.status not in TERMINAL
                assert run.lease_expires_at is not None
                last = last_claims[run.id]
                assert (last.payload["owner"], last.payload["attempt"]) == (run.lease_owner, run.attempt)
            if run.status in LEASED:
                assert run.lease_owner is not None
        # Leases the workers believe they hold are current; fenced-out leases never are.
        for lease in self.leases.values():
            run = runs[lease.run_id]
            assert (run.attempt, run.lease_owner) == (lease.attempt, lease.owner)
        for lease in self.stale:
            run = runs[lease.run_id]
            assert (run.attempt, run.lease_owner) != (lease.attempt, lease.owner)

    @staticmethod
    def _check_claims(runs: dict[str, Run], claims: list[Claim]) -> None:
        # Claims belong to live runs, except a done run's file and module claims (its PR is
        # open until merged or closed); live runs of one issue never coexist.
        live_issues = [(r.repo, r.issue_number) for r in runs.values() if r.status in LIVE]
        assert len(live_issues) == len(set(live_issues))
        for held in claims:
            status = runs[held.run_id].status
            assert status in LIVE or (status == Status.DONE and held.kind != "issue")
        holders = {c.resource: c.run_id for c in claims}
        for run in runs.values():
            if run.status in LIVE:
                assert holders.get(issue_resource(run.repo, run.issue_number)) == run.id
            if run.status in {Status.QUEUED, Status.DEFERRED}:
                assert [c for c in claims if c.run_id == run.id and c.kind != "issue"] == []


def queue_machine(db: Database, app_settings: Settings) -> type[QueueMachine]:
    """The machine bound to ``db`` and ``app_settings``."""

    class BoundQueueMachine(QueueMachine):
        pass

    BoundQueueMachine.db = db
    BoundQueueMachine.app_settings = app_settings
    return BoundQueueMachine


MACHINE_SETTINGS = hypothesis_settings(
    max_examples=30, stateful_step_count=50, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.mark.slow
def test_queue_keeps_its_invariants_under_random_operations(db: Database, settings: Settings) -> None:
    run_state_machine_as_test(queue_machine(db, settings), settings=MACHINE_SETTINGS)
