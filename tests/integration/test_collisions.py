"""Collision avoidance across parallel runs: plan claims, actual-file claims, deferral and rebase."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from agentz_app.domain import states
from agentz_app.store.models import Run
from tests.integration.test_coordinator import REPO, sh
from tests.integration.test_pipeline import APPROVE, Harness
from workers.pipeline import finish_run, settle_ci, work_run


def plan(files: list[str], modules: list[str] | None = None) -> dict[str, Any]:
    return {"summary": "change", "steps": ["edit"], "files": files, "modules": modules or [], "risk": "low"}


def for_issue(number: int, step: dict[str, Any]) -> dict[str, Any]:
    return {**step, "regex": f"#{number}\\b"}


def scripted(plans: dict[int, dict[str, Any]], writes: dict[int, list[list[dict[str, str]]]]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for number, value in plans.items():
        items.append(for_issue(number, {"role": "task_lead", "json": value}))
        items += [for_issue(number, {"role": "developer", "call": i + 1, "write": w})
                  for i, w in enumerate(writes[number])]
        items.append(for_issue(number, {"role": "reviewer", "json": APPROVE}))
    return items


def two_issues(tmp_path: Path, agent_steps: list[dict[str, Any]]) -> tuple[Harness, str, str]:
    h = Harness(tmp_path, agent_steps)
    h.gh.add_issue(8, "Make it smaller", "The app is big.", labels=["agent-z", "agent-z:queued"])
    first = h.enqueue()
    second, _ = h.queue.intake.enqueue(REPO, 8, installation_id=1, title="Make it smaller")
    return h, first, second.id


async def plan_both(h: Harness) -> None:
    assert (await h.plan()).status == "ready"
    assert (await h.plan()).status == "ready"


async def work_in_parallel(h: Harness) -> list[Run]:
    leases = [h.queue.leases.claim(f"worker-{i}", statuses=states.CLAIMABLE_BY_WORKER) for i in (1, 2)]
    return list(await asyncio.gather(*(work_run(h.deps, *claimed) for claimed in leases if claimed is not None)))


async def green(h: Harness, run_id: str) -> str:
    """CI passes and the run is done; returns its head."""
    run = h.queue.reads.get(run_id)
    assert run.status == "waiting_checks"
    assert run.head_sha is not None
    h.ci(run.head_sha, "success")
    assert (await settle_ci(h.deps, h.gh, run)).status == "done"
    return run.head_sha


async def merge(h: Harness, run_id: str) -> None:
    """A maintainer merges the run's PR (a fast-forward of ``trunk``)."""
    sh("git", "update-ref", "refs/heads/trunk", h.queue.reads.get(run_id).head_sha or "", cwd=h.origin)
    merged = h.queue.moves.set_status(run_id, "merged", reason="pull request merged", actor="github")
    await finish_run(h.deps, h.gh, merged)


async def green_and_merged(h: Harness, run_id: str) -> str:
    head = await green(h, run_id)
    await merge(h, run_id)
    return head


def is_ancestor(h: Harness, older: str, newer: str) -> bool:
    found = sh("git", "merge-base", older, newer, cwd=h.origin)
    return found == older


async def one_waits_then_both_are_green(h: Harness, first: str, second: str) -> None:
    results = {run.id: run.status for run in await work_in_parallel(h)}
    assert sorted(results.values()) == ["deferred", "waiting_checks"]
    winner = first if results[first] == "waiting_checks" else second
    loser = second if winner == first else first

    # Green CI is not enough: the waiting run goes on only once the other's PR is merged or closed.
    winner_head = await green(h, winner)
    assert h.queue.reads.get(loser).status == "deferred"
    await merge(h, winner)
    assert h.queue.reads.get(loser).status == "ready"

    resumed = await h.work()
    assert resumed.id == loser
    assert resumed.status == "waiting_checks"
    assert resumed.head_sha is not None
    # Built on the merged change: the second PR merges without conflicts.
    assert is_ancestor(h, winner_head, resumed.head_sha)
    await green_and_merged(h, loser)
    assert {run.pr_number for run in (h.queue.reads.get(first), h.queue.reads.get(second))} == set(h.gh.pulls)
    assert len(h.gh.pulls) == 2


async def test_two_runs_on_the_same_file_take_turns_and_both_end_green(tmp_path: Path) -> None:
    agent_steps = scripted(
        {7: plan(["src/app.py"]), 8: plan(["src/app.py"])},
        {7: [[{"path": "src/app.py", "content": "print('fast')\n"}]],
         8: [[{"path": "src/app.py", "content": "print('fast and small')\n"}]]},
    )
    h, first, second = two_issues(tmp_path, agent_steps)
    await plan_both(h)
    await one_waits_then_both_are_green(h, first, second)


async def test_two_runs_in_the_same_module_take_turns_and_both_end_green(tmp_path: Path) -> None:
    agent_steps = scripted(
        {7: plan(["src/app.py"]), 8: plan(["src/size.py"])},
        {7: [[{"path": "src/app.py", "content": "print('fast')\n"}]],
         8: [[{"path": "src/size.py", "content": "SIZE = 1\n"}]]},
    )
    h, first, second = two_issues(tmp_path, agent_steps)
    await plan_both(h)
    await one_waits_then_both_are_green(h, first, second)


async def test_a_change_outside_its_plan_waits_for_the_holder_then_is_rebased_not_redeveloped(
    tmp_path: Path,
) -> None:
    agent_steps = scripted(
        {7: plan(["src/app.py"]), 8: plan(["docs/size.md"])},
        {7: [[{"path": "src/app.py", "content": "print('fast')\n"}]],
         8: [[{"path": "docs/size.md", "content": "small\n"}, {"path": "src/size.py", "content": "SIZE = 1\n"}],
             [{"path": "src/size.py", "content": "SIZE = 2\n"}]]},
    )
    h, first, second = two_issues(tmp_path, agent_steps)
    await plan_both(h)
    assert (await h.work()).status == "waiting_checks"  # issue 7 holds src/app.py and module src

    deferred = await h.work()
    assert deferred.id == second
    assert deferred.status == "deferred"
    assert deferred.stage == "rebasing"
    assert deferred.pr_number is None
    assert len(h.gh.pulls) == 1  # nothing was submitted
    conflict = [e for e in h.queue.reads.events(second) if e.kind == "claims_conflict"][-1]
    assert f"module:{REPO}:src" in conflict.payload["resources"]

    merged_head = await green_and_merged(h, first)
    resumed = await h.work()
    assert resumed.id == second
    assert resumed.status == "waiting_checks"
    assert resumed.head_sha is not None
    assert is_ancestor(h, merged_head, resumed.head_sha)
    assert sh("git", "show", f"{resumed.head_sha}:src/app.py", cwd=h.origin) == "print('fast')"
    assert sh("git", "show", f"{resumed.head_sha}:src/size.py", cwd=h.origin) == "SIZE = 1"
    calls = [e.payload["role"] for e in h.queue.reads.events(second) if e.kind == "agent_call"]
    assert calls.count("developer") == 1  # rebased in the mirror, not developed again
    assert [e.payload["moved"] for e in h.queue.reads.events(second) if e.kind == "rebased"] == [True]


async def test_a_change_that_conflicts_after_the_merge_is_developed_again_on_the_new_base(tmp_path: Path) -> None:
    agent_steps = scripted(
        {7: plan(["src/app.py"]), 8: plan(["docs/size.md"])},
        {7: [[{"path": "src/app.py", "content": "print('fast')\n"}]],
         8: [[{"path": "src/app.py", "content": "print('small')\n"}],
             [{"path": "src/app.py", "content": "print('fast and small')\n"}]]},
    )
    h, first, second = two_issues(tmp_path, agent_steps)
    await plan_both(h)
    assert (await h.work()).status == "waiting_checks"
    assert (await h.work()).status == "deferred"
    merged_head = await green_and_merged(h, first)

    resumed = await h.work()
    assert resumed.status == "waiting_checks"
    assert resumed.head_sha is not None
    assert is_ancestor(h, merged_head, resumed.head_sha)
    assert sh("git", "show", f"{resumed.head_sha}:src/app.py", cwd=h.origin) == "print('fast and small')"
    calls = [e.payload["role"] for e in h.queue.reads.events(second) if e.kind == "agent_call"]
    assert calls.count("developer") == 2


async def test_a_plan_without_files_or_modules_claims_the_whole_repository(tmp_path: Path) -> None:
    agent_steps = scripted(
        {7: plan([]), 8: plan(["docs/size.md"])},
        {7: [[{"path": "src/app.py", "content": "print('fast')\n"}]],
         8: [[{"path": "docs/size.md", "content": "small\n"}]]},
    )
    h, first, second = two_issues(tmp_path, agent_steps)
    await plan_both(h)
    assert (await h.work()).status == "waiting_checks"
    assert f"module:{REPO}:*" in h.queue.reads.claims_of(first)
    blocked = await h.work()
    assert blocked.id == second
    assert blocked.status == "deferred"


async def test_with_claims_released_at_done_the_waiting_run_goes_on_when_the_other_is_green(tmp_path: Path) -> None:
    agent_steps = scripted(
        {7: plan(["src/app.py"]), 8: plan(["src/app.py"])},
        {7: [[{"path": "src/app.py", "content": "print('fast')\n"}]],
         8: [[{"path": "src/app.py", "content": "print('small')\n"}]]},
    )
    h, first, second = two_issues(tmp_path, agent_steps)
    h.settings = h.deps.settings = h.settings.model_copy(update={"claims_until_merged": False})
    await plan_both(h)
    results = {run.id: run.status for run in await work_in_parallel(h)}
    winner = first if results[first] == "waiting_checks" else second
    loser = second if winner == first else first
    await green(h, winner)
    assert h.queue.reads.claims_of(winner) == []
    assert h.queue.reads.get(loser).status == "ready"
