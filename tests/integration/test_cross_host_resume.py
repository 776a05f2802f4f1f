"""Runs move between hosts without losing work: checkpoints during agent calls, fixing resumes as fixing,
and a session held by another host is never named to the local CLI."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from agentz_app.config import Settings
from agentz_app.domain import states
from agentz_app.domain.runner import RunnerResult
from agentz_app.store.models import Run
from agentz_app.store.runs import RunQueue
from tests.integration.test_coordinator import sh
from tests.integration.test_pipeline import APPROVE, BLOCKING, PLAN, Harness, agent_started, steps
from tests.waiting import wait_for
from workers.pipeline import PipelineDeps, plan_run, work_run
from workers.runners.scripted import ScriptedRunner
from workers.worktrees import Worktrees, checkpoint_ref

DEVELOP = "Implement the plan"
FIX = "The reviewer asked for changes"
TAKEOVER = "taking over work on this issue"


def set_steps(deps: PipelineDeps, *items: dict[str, Any]) -> None:
    deps.extra_agent_env = steps(*items)


class Recording:
    """The scripted runner, remembering every call's role, session id and prompt."""

    name = "scripted"

    def __init__(self, settings: Settings) -> None:
        self.inner = ScriptedRunner(settings)
        self.calls: list[tuple[str, str | None, str]] = []

    async def run(self, role: str, prompt: str, workdir: Path, **options: Any) -> RunnerResult:
        self.calls.append((role, options.get("session_id"), prompt))
        return await self.inner.run(role, prompt, workdir, **options)


def other_host(h: Harness, tmp_path: Path, host_id: str, *items: dict[str, Any]) -> tuple[PipelineDeps, Recording]:
    """Pipeline dependencies of a second host: same database and remote, its own STATE_DIR and HOST_ID."""
    settings = h.settings.model_copy(update={"state_dir": tmp_path / host_id, "host_id": host_id})
    runner = Recording(settings)

    async def github(_: Run) -> Any:
        return h.gh

    deps = PipelineDeps(settings=settings, db=h.db, queue=RunQueue(h.db, lease_seconds=settings.lease_seconds),
                        github=github, worktrees=Worktrees(settings), extra_agent_env=steps(*items),
                        runner_for=lambda role: runner)
    return deps, runner


async def until(what: str, predicate: Any) -> None:
    await wait_for(predicate, timeout=20.0, what=what)


def count_snapshots(worktrees: Worktrees, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the working-copy snapshots taken from now on (each checkpoint interval takes one)."""
    taken = [0]
    original = worktrees.snapshot

    async def counted(*args: Any, **kwargs: Any) -> Any:
        taken[0] += 1
        return await original(*args, **kwargs)

    monkeypatch.setattr(worktrees, "snapshot", counted)
    return taken


async def more_snapshots(taken: list[int], count: int) -> None:
    """Wait until ``count`` more checkpoint intervals have looked at the working copy."""
    target = taken[0] + count
    await wait_for(lambda: taken[0] >= target, timeout=20, what=f"{count} more checkpoint intervals")


async def interrupt(task: asyncio.Task[Run]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_long_developer_call_is_checkpointed_while_it_runs(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(tmp_path, [
        {"role": "task_lead", "json": PLAN},
        {"role": "developer", "write": [{"path": "src/app.py", "content": "print('fast')\n"}], "run": ["sleep 30"]},
    ], checkpoint_seconds=0.1)
    run_id = h.enqueue()
    await h.plan()
    claimed = h.queue.leases.claim("worker-1", statuses=states.CLAIMABLE_BY_WORKER)
    assert claimed is not None
    taken = count_snapshots(h.deps.worktrees, monkeypatch)
    task = asyncio.create_task(work_run(h.deps, *claimed))
    await until("a checkpoint", lambda: h.queue.reads.get(run_id).checkpoint_sha is not None)
    during = h.queue.reads.get(run_id)
    assert during.status == "developing"  # the agent is still working
    assert sh("git", "rev-parse", checkpoint_ref(run_id), cwd=h.origin) == during.checkpoint_sha
    assert sh("git", "show", f"{during.checkpoint_sha}:src/app.py", cwd=h.origin) == "print('fast')"
    await more_snapshots(taken, 3)  # the tree did not change since: no second checkpoint
    assert [e.payload["sha"] for e in h.queue.reads.events(run_id) if e.kind == "checkpoint"] == [during.checkpoint_sha]
    await interrupt(task)


async def test_a_tree_the_content_policy_refuses_is_never_checkpointed_mid_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = Harness(tmp_path, [
        {"role": "task_lead", "json": PLAN},
        {"role": "developer", "match": DEVELOP, "run": ["sleep 30"],
         "write": [{"path": ".github/workflows/steal.yml", "content": "on: push\n"}]},
    ], checkpoint_seconds=0.1)
    run_id = h.enqueue()
    await h.plan()
    claimed = h.queue.leases.claim("worker-1", statuses=states.CLAIMABLE_BY_WORKER)
    assert claimed is not None
    taken = count_snapshots(h.deps.worktrees, monkeypatch)
    task = asyncio.create_task(work_run(h.deps, *claimed))
    await until("the developer call", lambda: agent_started(h.queue, run_id, "developer"))
    await more_snapshots(taken, 5)  # the agent wrote the file at once; every interval since saw it
    assert h.queue.reads.get(run_id).checkpoint_sha is None
    assert [e for e in h.queue.reads.events(run_id) if e.kind == "checkpoint"] == []
    assert sh("git", "ls-remote", "origin", cwd=h.origin).count("refs/agent-z/") == 0
    await interrupt(task)


async def test_a_run_interrupted_while_fixing_goes_back_to_fixing_with_the_stored_findings(tmp_path: Path) -> None:
    h = Harness(tmp_path, [
        {"role": "task_lead", "json": PLAN},
        {"role": "developer", "match": DEVELOP, "write": [{"path": "src/app.py", "content": "print('fast')\n"}]},
        {"role": "developer", "match": FIX, "hang": True},
        {"role": "reviewer", "json": BLOCKING},
    ])
    run_id = h.enqueue()
    await h.plan()
    claimed = h.queue.leases.claim("worker-1", statuses=states.CLAIMABLE_BY_WORKER)
    assert claimed is not None
    task = asyncio.create_task(work_run(h.deps, *claimed))
    await until("the fixing call", lambda: h.queue.reads.get(run_id).status == "fixing"
                and sum(e.kind == "agent_started" and e.payload.get("role") == "developer"
                        for e in h.queue.reads.events(run_id)) == 2)
    await interrupt(task)
    assert (h.queue.reads.get(run_id).status, h.queue.reads.get(run_id).stage) == ("ready", "fixing")

    test_file = {"path": "tests/test_app.py", "content": "def test(): pass\n"}
    set_steps(h.deps, {"role": "developer", "match": FIX, "write": [test_file]}, {"role": "reviewer", "json": APPROVE})
    run = await h.work()

    assert run.status == "waiting_checks"
    assert run.review_round == 2
    resumed = [(e.from_status, e.to_status) for e in h.queue.reads.events(run_id) if e.kind == "transition"]
    after_interrupt = resumed[resumed.index(("fixing", "ready")) + 1:]
    assert after_interrupt[0] == ("ready", "fixing")  # no review round in between
    assert [e.payload["round"] for e in h.queue.reads.events(run_id) if e.kind == "review"] == [1, 2]


async def test_another_host_resumes_from_the_checkpoint_over_its_stale_copy_in_a_fresh_session(
    tmp_path: Path,
) -> None:
    # Host B plans (and so holds a working copy at the base), host A develops and is stopped after a
    # checkpoint, host B finishes: it must build on A's checkpoint, not on its own stale copy.
    h = Harness(tmp_path, [
        {"role": "developer", "match": DEVELOP, "write": [{"path": "src/app.py", "content": "print('fast')\n"}],
         "run": ["sleep 30"]},
    ], checkpoint_seconds=0.3, host_id="host-a")
    host_b, runner_b = other_host(h, tmp_path, "host-b",
                        {"role": "task_lead", "json": PLAN},
                        {"role": "developer", "match": TAKEOVER,
                         "write": [{"path": "tests/test_app.py", "content": "def test(): pass\n"}]},
                        {"role": "reviewer", "json": APPROVE})
    run_id = h.enqueue()
    claimed = h.queue.leases.claim("planner-b", statuses=states.CLAIMABLE_BY_PLANNER, target="planning")
    assert claimed is not None
    planned = await plan_run(host_b, *claimed)
    assert planned.session_host == "host-b"
    assert planned.session_id
    stale_copy = host_b.worktrees.worktree_path(run_id)
    assert stale_copy.exists()

    claimed = h.queue.leases.claim("worker-a", statuses=states.CLAIMABLE_BY_WORKER)
    assert claimed is not None
    task = asyncio.create_task(work_run(h.deps, *claimed))
    await until("a checkpoint", lambda: h.queue.reads.get(run_id).checkpoint_sha is not None)
    await interrupt(task)
    stopped = h.queue.reads.get(run_id)
    # Host A could not use host B's planning session and started its own, which died with it.
    assert (stopped.status, stopped.stage, stopped.session_id, stopped.session_host) == (
        "ready", "developing", None, None)

    claimed = h.queue.leases.claim("worker-b", statuses=states.CLAIMABLE_BY_WORKER)
    assert claimed is not None
    run = await work_run(host_b, *claimed)

    assert run.status == "waiting_checks", run.error
    assert run.head_sha is not None
    assert sh("git", "show", f"{run.head_sha}:src/app.py", cwd=h.origin) == "print('fast')"  # host A's work
    assert sh("git", "show", f"{run.head_sha}:tests/test_app.py", cwd=h.origin) == "def test(): pass"
    assert len(h.gh.pulls) == 1
    assert (run.session_host, run.reviewer_session_host) == ("host-b", "host-b")
    elsewhere = [e.payload for e in h.queue.reads.events(run_id) if e.kind == "session_elsewhere"]
    assert elsewhere == [{"role": "developer", "session_host": "host-b", "host": "host-a"}]
    [(session, prompt)] = [(session, prompt) for role, session, prompt in runner_b.calls if role == "developer"]
    assert session is None  # host A's session id is never named to host B's CLI
    context, instructions = prompt.split("Your task:")
    assert "+print('fast')" in context
    assert "Implement the plan below" in instructions
    reviewer_sessions = [session for role, session, _ in runner_b.calls if role == "reviewer"]
    assert reviewer_sessions == [None]
