"""The heartbeat around a stage: renewals, a lost lease, and a lease the stage gave back itself."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from agentz_app.domain.states import CLAIMABLE_BY_PLANNER, Status
from agentz_app.errors import LeaseLost
from agentz_app.store.db import Database
from agentz_app.store.runs import Lease, RunQueue
from workers.pipeline import with_heartbeat

INTERVAL = 0.05


async def stopped(db: Database, queue: RunQueue, lease: Lease, before: Callable[[], Any]) -> list[str]:
    """Run a stage that calls ``before`` and then keeps working past many renewals under the heartbeat;
    it must end in LeaseLost. What the stage wrote after ``before`` (nothing, if it was stopped)."""
    after: list[str] = []

    async def stage() -> str:
        await db.run(before)
        await asyncio.sleep(INTERVAL * 40)
        after.append("wrote on")
        return "planned"

    with pytest.raises(LeaseLost):
        await with_heartbeat(db, queue.leases, lease, INTERVAL, stage())
    return after


async def test_a_stage_that_gives_its_lease_back_finishes_what_follows(sqlite_db: Database) -> None:
    queue = RunQueue(sqlite_db)
    queue.intake.enqueue("o/r", 1)
    [taken] = queue.leases.take("w1", statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING)
    after: list[str] = []

    async def stage() -> str:
        await sqlite_db.run(queue.moves.complete, taken.lease, Status.AWAITING_APPROVAL)  # holds no lease
        await asyncio.sleep(INTERVAL * 6)  # several renewals fall due while it reports the move
        after.append("reported")
        return "planned"

    assert await with_heartbeat(sqlite_db, queue.leases, taken.lease, INTERVAL, stage()) == "planned"
    assert after == ["reported"]


async def test_a_stage_whose_lease_is_taken_away_is_stopped(sqlite_db: Database) -> None:
    queue = RunQueue(sqlite_db)
    run, _ = queue.intake.enqueue("o/r", 1)
    [taken] = queue.leases.take("w1", statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING)
    assert await stopped(sqlite_db, queue, taken.lease,
                         lambda: queue.leases.revoke_lease(run.id, reason="lease expired")) == []


async def test_a_given_back_lease_taken_again_by_someone_else_is_lost(sqlite_db: Database) -> None:
    queue = RunQueue(sqlite_db)
    run, _ = queue.intake.enqueue("o/r", 1)
    [taken] = queue.leases.take("w1", statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING)

    def give_back_and_lose() -> None:
        queue.moves.complete(taken.lease, Status.QUEUED)
        queue.leases.take("w2", statuses=CLAIMABLE_BY_PLANNER, run_id=run.id)

    assert await stopped(sqlite_db, queue, taken.lease, give_back_and_lose) == []
