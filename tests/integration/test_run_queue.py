from __future__ import annotations

import pytest

from agentz_app.domain.states import CLAIMABLE_BY_PLANNER, CLAIMABLE_BY_WORKER, Status
from agentz_app.errors import IllegalTransition, LeaseLost, NotFound, StoreError
from agentz_app.store.models import Run
from agentz_app.store.runs import RunQueue, file_resource, issue_resource, module_resource
from tests.fakes import FakeClock


def _ready(queue: RunQueue, number: int, owner: str = "planner") -> str:
    """Enqueue and plan an issue; the clock moves on so claim order follows creation."""
    assert isinstance(queue.clock, FakeClock)
    queue.clock.now += 1
    run, _ = queue.intake.enqueue("o/r", number)
    claimed = queue.leases.claim(owner, statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING)
    assert claimed is not None
    assert claimed[0].id == run.id
    queue.moves.transition(claimed[1], Status.READY, plan={"steps": []})
    return run.id


def test_enqueue_takes_the_issue_claim_and_logs_an_event(queue: RunQueue) -> None:
    run, created = queue.intake.enqueue("o/r", 7, title="Fix it", requested_by="alice", reason="label")
    assert created
    assert run.status == Status.QUEUED
    assert len(run.id) == 12
    assert queue.reads.claims_of(run.id) == [issue_resource("o/r", 7)]
    [event] = queue.reads.events(run.id)
    assert (event.kind, event.to_status, event.payload["requested_by"]) == ("enqueued", "queued", "alice")


def test_second_enqueue_of_a_live_issue_returns_the_live_run(queue: RunQueue) -> None:
    first, _ = queue.intake.enqueue("o/r", 7)
    again, created = queue.intake.enqueue("o/r", 7)
    assert (again.id, created) == (first.id, False)
    assert len(queue.reads.list_runs()) == 1


def test_enqueue_after_a_terminal_run_creates_a_new_run(queue: RunQueue) -> None:
    first, _ = queue.intake.enqueue("o/r", 7)
    queue.moves.cancel(first.id, reason="no")
    second, created = queue.intake.enqueue("o/r", 7)
    assert created
    assert second.id != first.id
    assert queue.reads.claims_of(second.id) == [issue_resource("o/r", 7)]


@pytest.mark.parametrize(("repo", "number", "mode"), [("bad", 1, "full"), ("o/r", 0, "full"), ("o/r", 1, "fast")])
def test_enqueue_rejects_invalid_input(queue: RunQueue, repo: str, number: int, mode: str) -> None:
    with pytest.raises(StoreError):
        queue.intake.enqueue(repo, number, mode=mode)


def test_claim_takes_the_oldest_run_and_bumps_the_attempt(queue: RunQueue, clock: FakeClock) -> None:
    first, _ = queue.intake.enqueue("o/r", 1)
    clock.now += 1
    queue.intake.enqueue("o/r", 2)
    claimed = queue.leases.claim("w1", statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING)
    assert claimed is not None
    run, lease = claimed
    assert (run.id, run.status, run.attempt, run.lease_owner) == (first.id, "planning", 1, "w1")
    assert run.lease_expires_at == clock.now + 60
    assert lease.attempt == 1


def test_claim_returns_none_when_nothing_is_claimable(queue: RunQueue) -> None:
    assert queue.leases.claim("w1", statuses=CLAIMABLE_BY_WORKER) is None


def test_claim_skips_repos_at_their_parallel_limit(queue: RunQueue, clock: FakeClock) -> None:
    queue.intake.enqueue("o/busy", 1)
    clock.now += 1
    queue.intake.enqueue("o/busy", 2)
    clock.now += 1
    other, _ = queue.intake.enqueue("o/free", 1)
    assert queue.leases.claim("w1", statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING, per_repo_limit=1)
    claimed = queue.leases.claim("w2", statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING, per_repo_limit=1)
    assert claimed is not None
    assert claimed[0].id == other.id
    assert queue.leases.claim("w3", statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING, per_repo_limit=1) is None


def test_heartbeat_extends_the_lease(queue: RunQueue, clock: FakeClock) -> None:
    queue.intake.enqueue("o/r", 1)
    claimed = queue.leases.claim("w1", statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING)
    assert claimed is not None
    clock.now += 30
    assert queue.leases.heartbeat(claimed[1]) == clock.now + 60


def test_illegal_transition_changes_nothing(queue: RunQueue) -> None:
    run, _ = queue.intake.enqueue("o/r", 1)
    claimed = queue.leases.claim("w1", statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING)
    assert claimed is not None
    before = len(queue.reads.events(run.id))
    with pytest.raises(IllegalTransition):
        queue.moves.transition(claimed[1], Status.DONE)
    after = queue.reads.get(run.id)
    assert (after.status, after.lease_owner, len(queue.reads.events(run.id))) == ("planning", "w1", before)


def test_cancel_fences_out_the_lease_holder(queue: RunQueue) -> None:
    run, _ = queue.intake.enqueue("o/r", 1)
    claimed = queue.leases.claim("w1", statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING)
    assert claimed is not None
    queue.moves.cancel(run.id, reason="operator said so")
    for write in (
        lambda: queue.leases.heartbeat(claimed[1]),
        lambda: queue.moves.update(claimed[1], title="late"),
        lambda: queue.moves.transition(claimed[1], Status.READY),
        lambda: queue.resources.claim_resources(claimed[1], [file_resource("o/r", "a.py")]),
    ):
        with pytest.raises(LeaseLost):
            write()
    after = queue.reads.get(run.id)
    assert (after.status, after.title, after.lease_owner) == ("cancelled", "", None)
    assert queue.reads.claims_of(run.id) == []


def test_stale_attempt_cannot_write_after_a_new_claim(queue: RunQueue) -> None:
    run_id = _ready(queue, 1)
    claimed = queue.leases.claim("w1", statuses=CLAIMABLE_BY_WORKER, target=Status.DEVELOPING)
    assert claimed is not None
    queue.moves.set_status(run_id, Status.READY, reason="lease expired")
    again = queue.leases.claim("w2", statuses=CLAIMABLE_BY_WORKER, target=Status.DEVELOPING)
    assert again is not None
    assert again[1].attempt > claimed[1].attempt
    with pytest.raises(LeaseLost):
        queue.moves.update(claimed[1], session_id="zombie")
    assert queue.moves.update(again[1], session_id="fresh").session_id == "fresh"


def test_resource_claims_are_all_or_nothing(queue: RunQueue) -> None:
    a = _ready(queue, 1)
    b = _ready(queue, 2)
    lease_a = queue.leases.claim("w1", statuses=CLAIMABLE_BY_WORKER)
    lease_b = queue.leases.claim("w2", statuses=CLAIMABLE_BY_WORKER)
    assert lease_a is not None
    assert lease_b is not None
    shared, own = file_resource("o/r", "x.py"), module_resource("o/r", "core")
    assert queue.resources.claim_resources(lease_a[1], [shared]) == []
    assert queue.resources.claim_resources(lease_a[1], [shared]) == []  # re-claiming is a no-op
    assert queue.resources.claim_resources(lease_b[1], [own, shared]) == [shared]
    assert queue.reads.claims_of(b) == [issue_resource("o/r", 2)]
    assert queue.reads.claims_of(a) == [file_resource("o/r", "x.py"), issue_resource("o/r", 1)]


def test_deferred_run_becomes_claimable_when_the_conflict_is_released(queue: RunQueue) -> None:
    a = _ready(queue, 1)
    b = _ready(queue, 2)
    lease_a = queue.leases.claim("w1", statuses=CLAIMABLE_BY_WORKER)
    lease_b = queue.leases.claim("w2", statuses=CLAIMABLE_BY_WORKER)
    assert lease_a is not None
    assert lease_b is not None
    shared = file_resource("o/r", "x.py")
    queue.resources.claim_resources(lease_a[1], [shared])
    conflicts = queue.resources.claim_resources(lease_b[1], [shared])
    assert queue.moves.defer(lease_b[1], conflicts).status == Status.DEFERRED
    assert queue.resources.wake_deferred() == []
    queue.resources.release_resources(a)
    assert queue.reads.get(b).status == Status.READY
    assert queue.reads.claims_of(a) == [issue_resource("o/r", 1)]


def test_terminal_transition_frees_claims_and_wakes_deferred_runs(queue: RunQueue) -> None:
    a = _ready(queue, 1)
    b = _ready(queue, 2)
    lease_a = queue.leases.claim("w1", statuses=CLAIMABLE_BY_WORKER)
    lease_b = queue.leases.claim("w2", statuses=CLAIMABLE_BY_WORKER)
    assert lease_a is not None
    assert lease_b is not None
    queue.resources.claim_resources(lease_a[1], [file_resource("o/r", "x.py")])
    queue.moves.defer(lease_b[1], queue.resources.claim_resources(lease_b[1], [file_resource("o/r", "x.py")]))
    queue.moves.transition(lease_a[1], Status.FAILED, error="boom")
    assert queue.reads.claims_of(a) == []
    assert queue.reads.get(b).status == Status.READY


def test_resume_requeues_a_failed_run_and_retakes_the_issue(queue: RunQueue) -> None:
    run, _ = queue.intake.enqueue("o/r", 1)
    queue.moves.set_status(run.id, Status.FAILED, reason="broken", error="x", infra_attempts=3)
    resumed = queue.moves.resume(run.id)
    assert (resumed.status, resumed.infra_attempts, resumed.error) == ("queued", 0, None)
    assert queue.reads.claims_of(run.id) == [issue_resource("o/r", 1)]


def test_resume_refuses_a_run_that_is_actively_leased(queue: RunQueue) -> None:
    queue.intake.enqueue("o/r", 1)
    claimed = queue.leases.claim("w1", statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING)
    assert claimed is not None
    with pytest.raises(StoreError, match="leased"):
        queue.moves.resume(claimed[0].id)


def test_resume_of_an_expired_stage_makes_it_claimable(queue: RunQueue, clock: FakeClock) -> None:
    run_id = _ready(queue, 1)
    assert queue.leases.claim("w1", statuses=CLAIMABLE_BY_WORKER, target=Status.DEVELOPING)
    clock.now += 120
    assert [r.id for r in queue.reads.expired()] == [run_id]
    resumed = queue.moves.resume(run_id)
    assert (resumed.status, resumed.stage) == ("ready", "developing")


def test_runs_waiting_on_sha_finds_runs_by_head(queue: RunQueue) -> None:
    run_id = _ready(queue, 1)
    claimed = queue.leases.claim("w1", statuses=CLAIMABLE_BY_WORKER, target=Status.SUBMITTING)
    assert claimed is not None
    queue.moves.transition(claimed[1], Status.WAITING_CHECKS, head_sha="abc", pr_number=5)
    assert [r.id for r in queue.reads.runs_waiting_on_sha("o/r", "abc")] == [run_id]
    assert queue.reads.runs_waiting_on_sha("o/r", "other") == []
    assert queue.reads.get(run_id).lease_owner is None


def test_add_cost_accumulates(queue: RunQueue) -> None:
    queue.intake.enqueue("o/r", 1)
    claimed = queue.leases.claim("w1", statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING)
    assert claimed is not None
    queue.moves.add_cost(claimed[1], 0.25, 100)
    run = queue.moves.add_cost(claimed[1], 0.5, 50)
    assert (run.cost_usd, run.tokens) == (0.75, 150)


def test_update_rejects_queue_owned_fields(queue: RunQueue) -> None:
    queue.intake.enqueue("o/r", 1)
    claimed = queue.leases.claim("w1", statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING)
    assert claimed is not None
    with pytest.raises(StoreError):
        queue.moves.update(claimed[1], attempt=99)


def test_find_accepts_a_unique_id_prefix(queue: RunQueue) -> None:
    run, _ = queue.intake.enqueue("o/r", 1)
    assert queue.reads.find(run.id[:6]).id == run.id
    with pytest.raises(NotFound):
        queue.reads.find("zz")


def test_claim_batch_gives_each_run_its_own_lease(queue: RunQueue, clock: FakeClock) -> None:
    for number in (1, 2, 3):
        clock.now += 1
        queue.intake.enqueue("o/r", number)
    batch = queue.leases.claim_batch("w1", statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING, limit=2)
    assert [run.issue_number for run, _ in batch] == [1, 2]
    assert all(run.status == "planning" and run.lease_owner == "w1" and lease.attempt == 1 for run, lease in batch)
    assert [e.kind for e in queue.reads.events(batch[0][0].id)] == ["enqueued", "claimed"]


def test_claim_batch_respects_the_per_repo_limit(queue: RunQueue, clock: FakeClock) -> None:
    for repo, number in (("o/a", 1), ("o/a", 2), ("o/a", 3), ("o/b", 1)):
        clock.now += 1
        queue.intake.enqueue(repo, number)
    batch = queue.leases.claim_batch("w1", statuses=CLAIMABLE_BY_PLANNER, limit=10, per_repo_limit=2)
    assert sorted((run.repo, run.issue_number) for run, _ in batch) == [("o/a", 1), ("o/a", 2), ("o/b", 1)]


def test_transition_many_moves_held_runs_and_reports_lost_leases(queue: RunQueue, clock: FakeClock) -> None:
    for number in (1, 2, 3):
        clock.now += 1
        queue.intake.enqueue("o/r", number)
    batch = queue.leases.claim_batch("w1", statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING, limit=3)
    leases = [lease for _, lease in batch]
    queue.moves.cancel(leases[1].run_id, reason="operator")
    moved, lost = queue.moves.transition_many(leases, Status.FAILED, error="boom")
    assert sorted(run.id for run in moved) == sorted([leases[0].run_id, leases[2].run_id])
    assert lost == [leases[1]]
    assert all(run.status == "failed" and run.lease_owner is None for run in moved)
    assert queue.reads.claims_of(leases[0].run_id) == []
    queue.intake.enqueue("o/r", 4)
    fresh = queue.leases.claim_batch("w2", statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING)
    with pytest.raises(IllegalTransition):
        queue.moves.transition_many([fresh[0][1]], Status.DONE)
    assert queue.reads.get(fresh[0][0].id).status == "planning"


def test_claim_can_target_one_run(queue: RunQueue, clock: FakeClock) -> None:
    queue.intake.enqueue("o/r", 1)
    clock.now += 1
    second, _ = queue.intake.enqueue("o/r", 2)
    claimed = queue.leases.claim("w1", statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING, run_id=second.id)
    assert claimed is not None
    assert claimed[0].id == second.id
    assert queue.leases.claim("w2", statuses=CLAIMABLE_BY_PLANNER, run_id=second.id) is None


def test_enqueue_many_skips_live_issues(queue: RunQueue) -> None:
    live, _ = queue.intake.enqueue("o/r", 2)
    results = queue.intake.enqueue_many("o/r", [1, 2, 3], reason="batch", requested_by="scheduler")
    assert [(run.issue_number, created) for run, created in results] == [(1, True), (2, False), (3, True)]
    assert results[1][0].id == live.id
    for run, _ in results:
        assert queue.reads.claims_of(run.id) == [issue_resource("o/r", run.issue_number)]
    assert queue.reads.events(results[0][0].id)[0].payload == {
        "requested_by": "scheduler", "reason": "batch", "mode": "full", "force": False,
    }


def _id(run: Run | None) -> str | None:
    return run.id if run is not None else None


def test_requested_since_compares_github_times_of_the_request_and_the_run(queue: RunQueue, clock: FakeClock) -> None:
    assert queue.reads.requested_since("o/r", 1, "2026-11-25T10:00:00Z") is None  # no run yet
    run, _ = queue.intake.enqueue("o/r", 1, issue_updated_at="2026-11-25T10:00:05Z")
    assert _id(queue.reads.requested_since("o/r", 1, "2026-11-25T10:00:05Z")) == run.id
    assert _id(queue.reads.requested_since("o/r", 1, "2026-11-25T09:59:00+00:00")) == run.id
    assert queue.reads.requested_since("o/r", 1, "2026-11-25T10:00:06Z") is None
    assert queue.reads.requested_since("o/r", 1, "") is None
    assert queue.reads.requested_since("o/r", 1, "garbage") is None
    queue.moves.cancel(run.id, reason="done", actor="test")
    clock.now += 1
    unknown, _ = queue.intake.enqueue("o/r", 1)  # enqueued without an issue time: never counts as an answer
    assert queue.reads.requested_since("o/r", 1, "2000-01-01T00:00:00Z") is None
    assert unknown.id != run.id
