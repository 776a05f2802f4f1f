from __future__ import annotations

import threading

from sqlalchemy import text

from agentz_app.config import Settings
from agentz_app.domain.states import CLAIMABLE_BY_PLANNER, CLAIMABLE_BY_WORKER, Status
from agentz_app.reconciler import ReconcileReport, reconcile_once, run_reconciler
from agentz_app.store.db import Database
from agentz_app.store.models import PullSnapshot
from agentz_app.store.runs import Lease, RunQueue, file_resource, issue_resource
from agentz_app.store.trust import save_permission
from tests.fakes import FakeClock


def _reconcile(
    queue: RunQueue, settings: Settings, clock: FakeClock, dead: frozenset[str] = frozenset()
) -> ReconcileReport:
    return reconcile_once(queue.db, settings, clock=clock, is_dead=lambda owner: owner in dead)


def _developing(queue: RunQueue, clock: FakeClock, number: int = 1, owner: str = "w1",
                checkpoint: str | None = "c0ffee") -> Lease:
    clock.now += 1
    queue.intake.enqueue("o/r", number)
    claimed = queue.leases.claim("planner", statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING)
    assert claimed is not None
    queue.moves.transition(claimed[1], Status.READY, plan={"steps": ["a"]})
    claimed = queue.leases.claim(owner, statuses=CLAIMABLE_BY_WORKER, target=Status.DEVELOPING)
    assert claimed is not None
    queue.moves.update(claimed[1], branch=f"agent-z/issue-{number}-x", stage="developing")
    if checkpoint is not None:  # the attempt saved its work
        queue.moves.update(claimed[1], checkpoint_sha=checkpoint)
    return claimed[1]


def _add_pull(db: Database, **values: object) -> None:
    with db.begin() as session:
        session.add(PullSnapshot(repo="o/r", **values))


def test_expired_planning_lease_is_requeued(queue: RunQueue, settings: Settings, clock: FakeClock) -> None:
    run, _ = queue.intake.enqueue("o/r", 1)
    claimed = queue.leases.claim("w1", statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING)
    assert claimed is not None
    assert _reconcile(queue, settings, clock).total == 0
    clock.now += 61
    report = _reconcile(queue, settings, clock)
    after = queue.reads.get(run.id)
    assert report.requeued == [run.id]
    assert (after.status, after.lease_owner, after.infra_attempts) == ("queued", None, 1)
    assert queue.reads.events(run.id)[-1].payload["actor"] == "reconciler"


def test_expired_development_resumes_from_its_stage(queue: RunQueue, settings: Settings, clock: FakeClock) -> None:
    lease = _developing(queue, clock)
    queue.moves.update(lease, checkpoint_sha="c0ffee")
    clock.now += 61
    report = _reconcile(queue, settings, clock)
    after = queue.reads.get(lease.run_id)
    assert report.resumed == [lease.run_id]
    assert (after.status, after.stage, after.checkpoint_sha) == ("ready", "developing", "c0ffee")
    assert queue.reads.events(lease.run_id)[-1].payload["checkpoint_sha"] == "c0ffee"
    again = queue.leases.claim("w2", statuses=CLAIMABLE_BY_WORKER, target=Status.DEVELOPING)
    assert again is not None
    assert again[0].id == lease.run_id


def test_expired_development_without_a_checkpoint_is_quarantined(
    queue: RunQueue, settings: Settings, clock: FakeClock
) -> None:
    lease = _developing(queue, clock, checkpoint=None)
    clock.now += 61
    report = _reconcile(queue, settings, clock)
    after = queue.reads.get(lease.run_id)
    assert report.needs_human == [lease.run_id]
    assert report.resumed == []
    assert after.status == "needs_human"
    assert after.lease_owner is None
    assert after.error is not None
    assert after.error.startswith("quarantined:")
    assert "no checkpoint" in after.error


def test_expired_development_with_a_checkpoint_older_than_its_progress_is_quarantined(
    queue: RunQueue, settings: Settings, clock: FakeClock
) -> None:
    lease = _developing(queue, clock)
    queue.moves.add_event(lease.run_id, "agent_call", role="developer", cost_usd=0.0)  # work after the checkpoint
    clock.now += 61
    report = _reconcile(queue, settings, clock)
    after = queue.reads.get(lease.run_id)
    assert report.needs_human == [lease.run_id]
    assert after.error is not None
    assert "older than its last progress" in after.error


def test_a_reviewer_call_after_the_checkpoint_does_not_quarantine(
    queue: RunQueue, settings: Settings, clock: FakeClock
) -> None:
    lease = _developing(queue, clock)
    queue.moves.transition(lease, Status.REVIEWING, stage="reviewing")
    queue.moves.add_event(lease.run_id, "agent_call", role="reviewer", cost_usd=0.0)
    clock.now += 61
    report = _reconcile(queue, settings, clock)
    assert report.resumed == [lease.run_id]
    assert queue.reads.get(lease.run_id).stage == "reviewing"


def test_dead_owner_is_released_before_expiry(queue: RunQueue, settings: Settings, clock: FakeClock) -> None:
    lease = _developing(queue, clock, owner="host:1:2")
    report = _reconcile(queue, settings, clock, dead=frozenset({"host:1:2"}))
    assert report.resumed == [lease.run_id]
    assert queue.reads.get(lease.run_id).lease_owner is None


def test_live_lease_is_left_alone(queue: RunQueue, settings: Settings, clock: FakeClock) -> None:
    lease = _developing(queue, clock)
    clock.now += 50
    queue.leases.heartbeat(lease)
    clock.now += 50
    assert _reconcile(queue, settings, clock).total == 0
    assert queue.reads.get(lease.run_id).lease_owner == "w1"


def test_repeated_infrastructure_failures_fail_the_run(queue: RunQueue, settings: Settings, clock: FakeClock) -> None:
    run, _ = queue.intake.enqueue("o/r", 1)
    for _ in range(settings.max_infra_attempts):
        assert queue.leases.claim("w", statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING)
        clock.now += 61
        _reconcile(queue, settings, clock)
    after = queue.reads.get(run.id)
    assert after.status == "failed"
    assert "infrastructure attempts" in (after.error or "")
    assert queue.reads.claims_of(run.id) == []


def test_closed_pull_while_submitting_needs_a_human(queue: RunQueue, settings: Settings, clock: FakeClock) -> None:
    lease = _developing(queue, clock)
    queue.moves.transition(lease, Status.SUBMITTING, pr_number=9)
    _add_pull(queue.db, number=9, state="closed", merged=False, head_ref="agent-z/issue-1-x")
    clock.now += 61
    report = _reconcile(queue, settings, clock)
    after = queue.reads.get(lease.run_id)
    assert report.needs_human == [lease.run_id]
    assert after.status == "needs_human"
    assert "#9" in (after.error or "")


def test_merged_pull_completes_the_run(queue: RunQueue, settings: Settings, clock: FakeClock) -> None:
    lease = _developing(queue, clock)
    queue.moves.transition(lease, Status.SUBMITTING)
    queue.moves.transition(lease, Status.WAITING_CHECKS, head_sha="abc")
    _add_pull(queue.db, number=12, state="closed", merged=True, head_ref="agent-z/issue-1-x")
    report = _reconcile(queue, settings, clock)
    after = queue.reads.get(lease.run_id)
    assert report.merged == [lease.run_id]
    assert (after.status, after.pr_number) == ("merged", 12)
    assert queue.reads.claims_of(lease.run_id) == []


def _grant(db: Database, login: str, role: str) -> None:
    """Store GitHub's permission answer, as the pull request's webhook processing does."""
    legacy = {"admin": "admin", "maintain": "write", "write": "write", "triage": "read", "read": "read"}
    save_permission(db, "o/r", login, permission=legacy[role], role_name=role, at=1.0)


def test_foreign_pull_is_adopted(queue: RunQueue, settings: Settings, clock: FakeClock) -> None:
    lease = _developing(queue, clock)
    _grant(queue.db, "alice", "write")
    queue.resources.claim_resources(lease, [file_resource("o/r", "a.py")])
    _add_pull(queue.db, number=30, state="open", head_ref="alice/fix", head_sha="f00", author="alice",
              linked_issues=[1])
    report = _reconcile(queue, settings, clock)
    after = queue.reads.get(lease.run_id)
    assert report.adopted == [lease.run_id]
    assert (after.status, after.pr_number, after.head_sha) == ("waiting_checks", 30, "f00")
    assert queue.reads.claims_of(lease.run_id) == [issue_resource("o/r", 1)]
    assert queue.reads.events(lease.run_id)[-1].kind == "adopted"


def test_foreign_pull_cancels_the_run_under_cancel_policy(
    queue: RunQueue, settings: Settings, clock: FakeClock
) -> None:
    run, _ = queue.intake.enqueue("o/r", 4)
    _grant(queue.db, "bob", "maintain")
    _add_pull(queue.db, number=31, state="open", head_ref="bob/fix", author="bob", linked_issues=[4, 5])
    report = _reconcile(queue, settings.model_copy(update={"foreign_pr_policy": "cancel"}), clock)
    assert report.cancelled == [run.id]
    assert queue.reads.get(run.id).status == "cancelled"


def test_deferred_run_wakes_once_its_conflict_is_gone(queue: RunQueue, settings: Settings, clock: FakeClock) -> None:
    holder = _developing(queue, clock, 1)
    queue.resources.claim_resources(holder, [file_resource("o/r", "a.py")])
    clock.now += 1
    waiting, _ = queue.intake.enqueue("o/r", 2)
    claimed = queue.leases.claim("p", statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING)
    assert claimed is not None
    queue.moves.transition(claimed[1], Status.READY, plan={})
    claimed = queue.leases.claim("w2", statuses=CLAIMABLE_BY_WORKER)
    assert claimed is not None
    queue.moves.defer(claimed[1], queue.resources.claim_resources(claimed[1], [file_resource("o/r", "a.py")]))
    assert _reconcile(queue, settings, clock).undeferred == []
    with queue.db.begin() as session:  # the holder's claim vanishes behind the queue's back
        session.execute(text("DELETE FROM claims WHERE resource LIKE 'file:%'"))
    assert _reconcile(queue, settings, clock).undeferred == [waiting.id]
    assert queue.reads.get(waiting.id).status == "ready"


def test_reconciler_loop_runs_passes_until_stopped(db: Database, settings: Settings) -> None:
    queue = RunQueue(db)
    run, _ = queue.intake.enqueue("o/r", 1)
    with db.begin() as session:  # a planner whose lease ran out long ago
        session.execute(text("UPDATE runs SET status='planning', lease_owner='gone', lease_expires_at=1"))
    stop = threading.Event()
    reports: list[ReconcileReport] = []

    def record(report: ReconcileReport) -> None:
        reports.append(report)
        stop.set()

    run_reconciler(settings, db=db, stop=stop, on_report=record)
    assert [r.requeued for r in reports] == [[run.id]]
