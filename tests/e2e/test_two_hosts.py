"""kill -9 one host's worker mid-development: another host finishes the run once, with the work done before.

Two worker "hosts" share a PostgreSQL database and the fake GitHub: each has its own
``HOST_ID`` and ``STATE_DIR`` and runs its roles as real supervised processes. Host A
develops with a scripted agent that writes its part of the change and then keeps
working; once that part is checkpointed (``CHECKPOINT_SECONDS``), A's worker gets
SIGKILL and is not restarted; host B's worker resumes the run.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from agentz_app.demo import scenario
from agentz_app.demo.runner import Demo, DemoOptions
from agentz_app.fakehub.gitrepos import repo_path
from agentz_app.store.models import Event
from agentz_app.store.owners import parse_owner
from agentz_app.supervisor import RestartPolicy
from bench.common import count_double_claims, load_events

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

HOST_A = "host-a"
HOST_B = "host-b"
TITLE = "Write the two notes"
BEFORE_KILL = ("notes/a.md", "Written on the first host before it died.\n")
AFTER_KILL = ("notes/b.md", "Written where the run was resumed.\n")
NO_RESTART = RestartPolicy(base_delay=0.2, max_crashes=0)  # a killed worker stays down
SETTINGS = {"CHECKPOINT_SECONDS": "1", "HEARTBEAT_SECONDS": "1", "LEASE_SECONDS": "6",
            "RECONCILE_INTERVAL_SECONDS": "1", "SCHEDULER_DEBOUNCE_SECONDS": "0.5", "CI_QUIET_SECONDS": "1"}


def script() -> tuple[dict[str, Any], ...]:
    plan = {"summary": "Write both notes.", "steps": ["Write the notes"], "files": [BEFORE_KILL[0], AFTER_KILL[0]],
            "modules": [], "risk": "low", "test_command": "true"}
    return (
        {"role": "task_lead", "json": plan},
        # A fresh session on the resuming host is shown the change so far: it writes the second note.
        {"role": "developer", "match": "The change so far, as a unified diff",
         "write": [{"path": AFTER_KILL[0], "content": AFTER_KILL[1]}], "text": "Wrote the second note."},
        # The first host writes the first note, then keeps working until it is killed.
        {"role": "developer", "write": [{"path": BEFORE_KILL[0], "content": BEFORE_KILL[1]}], "run": ["sleep 120"]},
        {"role": "reviewer", "json": {"verdict": "approve", "findings": [], "summary": "Both notes are there."}},
        {"role": "scheduler", "regex": "(?m)^### #1:",
         "json": {"ranking": [{"number": 1, "score": 90, "reason": "labelled by a maintainer"}]}},
        {"role": "scheduler", "json": {"ranking": []}},
    )


def show(demo: Demo, ref: str, path: str) -> str:
    assert demo.hub is not None
    repo = repo_path(demo.hub.root, scenario.REPO)
    return subprocess.run(["git", "show", f"{ref}:{path}"], cwd=repo, capture_output=True, text=True,
                          check=True).stdout


async def kill_host_a_worker_mid_development(tmp_path: Path, postgres_url: str, *, planner_on_b: bool) -> None:
    roles = ("receiver", "scheduler", "reconciler", "worker") + (() if planner_on_b else ("planner",))
    options = DemoOptions(workspace=tmp_path / "demo", timeout=150, issues=(), ci_command="true", script=script(),
                          workers=1, roles=roles, restart_policy=NO_RESTART,
                          env={**SETTINGS, "DATABASE_URL": postgres_url, "HOST_ID": HOST_A})
    async with Demo(options) as demo:
        assert demo.hub is not None
        if planner_on_b:
            demo.add_host(HOST_B, ("planner",))  # B's planner leaves B a working copy of the run at the base
        await demo.seed()
        issue = demo.hub.issues.create(scenario.REPO, TITLE, "Add notes/a.md and notes/b.md.", user=scenario.MAINTAINER)
        demo.hub.issues.add_labels(scenario.REPO, int(issue["number"]), ["agent-z"], actor=scenario.MAINTAINER)

        def checkpointed_on_a() -> bool:
            run = demo.runs().get(1)
            return (run is not None and str(run.status) == "developing" and run.checkpoint_sha is not None
                    and run.lease_owner is not None and parse_owner(run.lease_owner).host == HOST_A)

        assert await demo.wait_for(checkpointed_on_a, timeout=90, interval=0.1), demo.runs()
        victim = demo.runs()[1]
        assert show(demo, victim.checkpoint_sha or "", BEFORE_KILL[0]) == BEFORE_KILL[1]
        stale_copy = tmp_path / "demo" / "hosts" / HOST_B / ".agent-z" / "worktrees" / victim.id
        assert stale_copy.exists() == planner_on_b
        assert demo.kill("worker-1", host=HOST_A) is not None
        demo.add_host(HOST_B, ("worker",))

        def finished() -> bool:
            run = demo.runs()[1]
            return str(run.status) in ("done", "failed", "needs_human", "cancelled")

        assert await demo.wait_for(finished, timeout=120, interval=0.2), demo.runs()
        assert await demo.settle(quiet=2.0)
        run = demo.runs()[1]
        assert str(run.status) == "done"
        assert run.pr_number is not None
        assert run.head_sha is not None
        assert run.lease_owner is None
        assert run.session_host == HOST_B
        # The work done on A before the kill is in the pull request, next to B's.
        assert show(demo, run.head_sha, BEFORE_KILL[0]) == BEFORE_KILL[1]
        assert show(demo, run.head_sha, AFTER_KILL[0]) == AFTER_KILL[1]
        audit = demo.audit()
        assert audit.pulls == {1: [run.pr_number]}
        assert audit.status_comments == {1: 1}
        assert audit.duplicate_checks == []
        assert count_double_claims(load_events(postgres_url)) == 0
        assert demo.db is not None
        with demo.db.read() as session:
            events = list(session.scalars(select(Event).where(Event.run_id == run.id).order_by(Event.id)))
        claimed_by = [parse_owner(str(e.payload["owner"])).host for e in events if e.kind == "claimed"
                      and "worker" in str(e.payload["owner"])]
        assert claimed_by[0] == HOST_A
        assert claimed_by[-1] == HOST_B
        assert any(e.kind == "session_elsewhere" for e in events)


async def test_a_run_killed_on_one_host_finishes_once_on_another_with_the_work_done_before(
    tmp_path: Path, postgres_url: str
) -> None:
    await kill_host_a_worker_mid_development(tmp_path, postgres_url, planner_on_b=False)


async def test_a_stale_local_copy_on_the_resuming_host_does_not_hide_the_checkpoint(
    tmp_path: Path, postgres_url: str
) -> None:
    await kill_host_a_worker_mid_development(tmp_path, postgres_url, planner_on_b=True)
