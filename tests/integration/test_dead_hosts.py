"""Any reconciler declares a host dead when all its leases expired and its heartbeats went stale."""

from __future__ import annotations

from sqlalchemy import select

from agentz_app.config import Settings
from agentz_app.domain.states import CLAIMABLE_BY_PLANNER, CLAIMABLE_BY_WORKER, Status
from agentz_app.reconciler import reconcile_once
from agentz_app.store.db import Database
from agentz_app.store.models import Event, Process
from agentz_app.store.runs import Lease, RunQueue
from tests.fakes import FakeClock

HOST_B = "host-b"


def _developing(queue: RunQueue, clock: FakeClock, number: int, owner: str) -> Lease:
    clock.now += 1
    queue.intake.enqueue("o/r", number)
    claimed = queue.leases.claim("planner", statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING)
    assert claimed is not None
    queue.moves.transition(claimed[1], Status.READY, plan={"steps": ["a"]})
    claimed = queue.leases.claim(owner, statuses=CLAIMABLE_BY_WORKER, target=Status.DEVELOPING)
    assert claimed is not None
    queue.moves.update(claimed[1], stage="developing", checkpoint_sha=f"c0ffee{number}")  # progress saved: resumable
    return claimed[1]


def _process_row(db: Database, host: str, name: str, heartbeat_at: float) -> None:
    with db.begin() as session:
        session.add(Process(host=host, name=name, role="worker", pid=1, state="running", restarts=0,
                            started_at=heartbeat_at, heartbeat_at=heartbeat_at, detail=""))


def _host_events(db: Database) -> list[Event]:
    with db.read() as session:
        return list(session.scalars(select(Event).where(Event.kind == "host_dead")))


def _process_states(db: Database, host: str) -> list[str]:
    with db.read() as session:
        return [row.state for row in session.scalars(select(Process).where(Process.host == host))]


def test_a_host_whose_leases_expired_and_heartbeats_went_stale_is_declared_dead(
    queue: RunQueue, settings: Settings, clock: FakeClock
) -> None:
    first = _developing(queue, clock, 1, f"{HOST_B}:11:5/worker")
    second = _developing(queue, clock, 2, f"{HOST_B}:12:6/worker")
    _process_row(queue.db, HOST_B, "worker-1", clock.now)
    _process_row(queue.db, HOST_B, "worker-2", clock.now)
    clock.now += 61

    report = reconcile_once(queue.db, settings, clock=clock, is_dead=lambda owner: False)

    assert report.dead_hosts == [HOST_B]
    assert sorted(report.resumed) == sorted([first.run_id, second.run_id])
    [event] = _host_events(queue.db)
    assert event.payload["host"] == HOST_B
    assert event.payload["runs"] == sorted([first.run_id, second.run_id])
    assert event.payload["by"] == settings.host_id
    assert _process_states(queue.db, HOST_B) == ["dead", "dead"]
    recovered = [e for e in queue.reads.events(first.run_id) if e.to_status == "ready" and e.payload.get("actor")
                 == "reconciler"]
    assert f"host {HOST_B}" in recovered[-1].payload["reason"]


def test_a_host_whose_supervisor_still_beats_is_not_declared_dead(
    queue: RunQueue, settings: Settings, clock: FakeClock
) -> None:
    lease = _developing(queue, clock, 1, f"{HOST_B}:11:5/worker")
    clock.now += 61
    _process_row(queue.db, HOST_B, "worker-1", clock.now - 5)

    report = reconcile_once(queue.db, settings, clock=clock, is_dead=lambda owner: False)

    assert report.dead_hosts == []
    assert _host_events(queue.db) == []
    assert _process_states(queue.db, HOST_B) == ["running"]
    assert report.resumed == [lease.run_id]  # its expired lease is still recovered, run by run


def test_a_host_with_one_lease_still_current_is_not_declared_dead(
    queue: RunQueue, settings: Settings, clock: FakeClock
) -> None:
    stale = _developing(queue, clock, 1, f"{HOST_B}:11:5/worker")
    clock.now += 40
    live = _developing(queue, clock, 2, f"{HOST_B}:12:6/worker")
    clock.now += 25

    report = reconcile_once(queue.db, settings, clock=clock, is_dead=lambda owner: False)

    assert report.dead_hosts == []
    assert _host_events(queue.db) == []
    assert report.resumed == [stale.run_id]
    assert queue.reads.get(live.run_id).lease_owner == live.owner


def test_the_reconcilers_own_host_is_never_declared_dead(
    queue: RunQueue, settings: Settings, clock: FakeClock
) -> None:
    _developing(queue, clock, 1, f"{settings.host_id}:11:5/worker")
    clock.now += 61

    report = reconcile_once(queue.db, settings, clock=clock, is_dead=lambda owner: False)

    assert report.dead_hosts == []
    assert _host_events(queue.db) == []
    assert len(report.resumed) == 1
