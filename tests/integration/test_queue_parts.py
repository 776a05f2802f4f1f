"""The run queue's parts are separate objects: each is built from the database and the clock and works alone."""

from __future__ import annotations

import inspect
import itertools

import pytest

from agentz_app.domain.states import CLAIMABLE_BY_PLANNER, Status
from agentz_app.errors import StoreError
from agentz_app.store.db import Database
from agentz_app.store.runs import (
    Intake,
    LeaseClaims,
    ReportClaims,
    ResourceClaims,
    RunQueue,
    RunReads,
    Transitions,
    file_resource,
    issue_resource,
)
from tests.fakes import FakeClock

PARTS: tuple[type, ...] = (Intake, RunReads, LeaseClaims, Transitions, ResourceClaims, ReportClaims)


def _public_methods(cls: type) -> set[str]:
    return {name for name, _ in inspect.getmembers(cls, inspect.isfunction) if not name.startswith("_")}


@pytest.mark.parametrize("part", PARTS, ids=lambda part: part.__name__)
def test_a_queue_part_inherits_from_nothing(part: type) -> None:
    assert part.__mro__ == (part, object)


def test_no_two_queue_parts_offer_the_same_method() -> None:
    shared = {
        (a.__name__, b.__name__): sorted(_public_methods(a) & _public_methods(b))
        for a, b in itertools.combinations(PARTS, 2)
    }
    assert {pair: names for pair, names in shared.items() if names} == {}


def test_the_queue_only_names_its_parts() -> None:
    assert _public_methods(RunQueue) == set()


def test_the_queue_builds_its_parts_once_over_one_database_clock_and_claim_connection(sqlite_db: Database) -> None:
    clock = FakeClock()
    queue = RunQueue(sqlite_db, clock=clock)
    parts = (queue.intake, queue.reads, queue.leases, queue.moves, queue.resources, queue.reports)
    assert [type(part) for part in parts] == list(PARTS)
    assert all(part.db is sqlite_db and part.clock is clock for part in parts)
    assert queue.leases.single_statements is queue.moves.single_statements


def test_each_part_built_alone_does_its_own_work(sqlite_db: Database) -> None:
    clock = FakeClock()
    run, created = Intake(sqlite_db, clock=clock).enqueue("o/r", 7, title="Fix it")
    assert created

    [claimed] = LeaseClaims(sqlite_db, lease_seconds=30, clock=clock).take(
        "planner", statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING)
    assert (claimed.run_id, claimed.status) == (run.id, Status.PLANNING)

    wanted = file_resource("o/r", "src/app.py")
    assert ResourceClaims(sqlite_db, clock=clock).claim_resources(claimed.lease, [wanted]) == []

    clock.now += 5
    moved = Transitions(sqlite_db, clock=clock).complete(claimed.lease, Status.READY, plan={"steps": []})
    assert (moved.run_id, moved.status) == (run.id, Status.READY)

    reads = RunReads(sqlite_db, clock=clock)
    stored = reads.get(run.id)
    assert (stored.status, stored.lease_owner, stored.updated_at) == (Status.READY, None, clock.now)
    assert reads.claims_of(run.id) == sorted([issue_resource("o/r", 7), wanted])
    assert [event.kind for event in reads.events(run.id)] == ["enqueued", "claimed", "transition"]

    reporter = ReportClaims(sqlite_db, clock=clock)
    assert reporter.claim_report(run.id, seconds=60) is not None
    assert reporter.claim_report(run.id, seconds=60) is None


def test_the_lease_part_checks_its_own_lease_length(sqlite_db: Database) -> None:
    with pytest.raises(StoreError, match="lease_seconds must be positive"):
        LeaseClaims(sqlite_db, lease_seconds=0)
