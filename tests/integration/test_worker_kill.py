from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from agentz_app.config import Settings
from agentz_app.domain.states import CLAIMABLE_BY_PLANNER, CLAIMABLE_BY_WORKER, Status
from agentz_app.reconciler import reconcile_once
from agentz_app.store.db import Database
from agentz_app.store.owners import owner_is_dead
from agentz_app.store.runs import RunQueue, file_resource, issue_resource

# A minimal worker: claim one run, take a file claim, then heartbeat until killed.
WORKER = """
import sys, time
from agentz_app.store.db import Database
from agentz_app.store.owners import current_owner
from agentz_app.store.runs import RunQueue, file_resource
url, statuses, target = sys.argv[1], sys.argv[2].split(","), sys.argv[3]
queue = RunQueue(Database.from_url(url), lease_seconds=60)
claimed = queue.leases.claim(current_owner("worker-1"), statuses=statuses, target=target)
assert claimed is not None
run, lease = claimed
assert queue.resources.claim_resources(lease, [file_resource(run.repo, "src/app.py")]) == []
queue.moves.update(lease, stage=target, checkpoint_sha="c0ffee")
print(run.id, lease.owner, flush=True)
while True:
    queue.leases.heartbeat(lease)
    time.sleep(0.1)
"""


def _kill_mid_stage(url: str, statuses: frozenset[str], target: str, tmp_path: Path) -> tuple[str, str]:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    proc = subprocess.Popen(
        [sys.executable, str(script), url, ",".join(statuses), target], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        run_id, owner = proc.stdout.readline().split()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return run_id, owner


@pytest.fixture
def queue(db: Database) -> RunQueue:
    return RunQueue(db, lease_seconds=60)


def test_killed_developer_is_resumable_at_once(
    queue: RunQueue, db_url: str, settings: Settings, tmp_path: Path
) -> None:
    queue.intake.enqueue("o/r", 1)
    claimed = queue.leases.claim("planner", statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING)
    assert claimed is not None
    queue.moves.transition(claimed[1], Status.READY, plan={"files": ["src/app.py"]})
    run_id, owner = _kill_mid_stage(db_url, CLAIMABLE_BY_WORKER, Status.DEVELOPING, tmp_path)
    assert owner_is_dead(owner)
    assert queue.reads.get(run_id).lease_owner == owner  # the lease has not expired yet

    report = reconcile_once(queue.db, settings)

    run = queue.reads.get(run_id)
    assert report.resumed == [run_id]
    assert (run.status, run.stage, run.checkpoint_sha, run.lease_owner, run.infra_attempts) == (
        "ready", "developing", "c0ffee", None, 1,
    )
    again = queue.leases.claim("worker-2", statuses=CLAIMABLE_BY_WORKER, target=Status.DEVELOPING)
    assert again is not None
    assert again[0].id == run_id
    assert queue.resources.claim_resources(again[1], [file_resource("o/r", "src/app.py")]) == []


def test_killed_planner_is_requeued_without_leaking_claims(
    queue: RunQueue, db_url: str, settings: Settings, tmp_path: Path
) -> None:
    queue.intake.enqueue("o/r", 2)
    run_id, _ = _kill_mid_stage(db_url, CLAIMABLE_BY_PLANNER, Status.PLANNING, tmp_path)

    report = reconcile_once(queue.db, settings)

    assert report.requeued == [run_id]
    assert queue.reads.get(run_id).status == "queued"
    assert queue.reads.claims_of(run_id) == [issue_resource("o/r", 2)]
