"""The whole stage machine with the scripted agent backend, a real bare repo and a stateful fake GitHub."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from agentz_app.config import Settings
from agentz_app.domain import states
from agentz_app.ingress.checks import check_run_record
from agentz_app.store.ci import record_ci
from agentz_app.store.db import Database
from agentz_app.store.migrate import migrate
from agentz_app.store.models import Run, now
from agentz_app.store.runs import RunQueue
from tests.db_templates import copy_migrated_sqlite
from tests.integration.test_coordinator import REPO, MemoryGH, make_origin, sh
from tests.waiting import wait_for
from workers.pipeline import PipelineDeps, plan_run, settle_ci, work_run
from workers.worktrees import Worktrees

PLAN = {"summary": "Make the app print fast", "steps": ["edit src/app.py"], "files": ["src/app.py"],
        "modules": ["app"], "risk": "low"}
BLOCKING = {"verdict": "request_changes", "summary": "not LGTM: no test",
            "findings": [{"file": "src/app.py", "line": 1, "severity": "major", "message": "add a test",
                          "blocking": True}]}
APPROVE = {"verdict": "approve", "summary": "LGTM", "findings": [
    {"file": "src/app.py", "line": 1, "severity": "info", "message": "nice", "blocking": False}]}


def steps(*items: dict[str, Any]) -> dict[str, str]:
    return {"AGENTZ_SCRIPTED_STEPS": json.dumps(list(items))}


HAPPY = [
    {"role": "task_lead", "json": PLAN, "cost_usd": 0.01},
    {"role": "developer", "call": 1, "write": [{"path": "src/app.py", "content": "print('fast')\n"}]},
    {"role": "developer", "call": 2, "write": [{"path": "tests/test_app.py", "content": "def test(): pass\n"}]},
    {"role": "developer", "call": 3, "write": [{"path": "src/app.py", "content": "print('fixed')\n"}]},
    {"role": "reviewer", "call": 1, "json": BLOCKING},
    {"role": "reviewer", "call": 2, "json": APPROVE},
]


def agent_started(queue: RunQueue, run_id: str, role: str) -> bool:
    """True once the run recorded the start of a ``role`` agent call."""
    return any(e.kind == "agent_started" and e.payload.get("role") == role for e in queue.reads.events(run_id))


def scripted_calls(state_dir: Path, role: str) -> int:
    """How many ``role`` calls the scripted backend counted, over every working copy.

    The run records ``agent_started`` just before the runner counts the call, so a test
    whose steps pick by ``nth`` must wait for this count before interrupting the call."""
    return sum(int(json.loads(path.read_text()).get(role, 0))
               for path in (state_dir / "scripted" / "workdirs").glob("*.json"))


class Harness:
    def __init__(self, tmp_path: Path, agent_steps: list[dict[str, Any]], **overrides: Any) -> None:
        make_origin(tmp_path / "remote")
        self.settings = Settings.load(
            None, database_url=copy_migrated_sqlite(tmp_path / "db.sqlite"), state_dir=tmp_path / "state",
            git_url_template=f"file://{tmp_path / 'remote'}/{{full_name}}.git", default_backend="scripted",
            heartbeat_seconds=0.2, lease_seconds=5, ci_quiet_seconds=0, **overrides,
        )
        self.db = Database.from_url(self.settings.database_url)
        migrate(self.db)
        self.queue = RunQueue(self.db, lease_seconds=self.settings.lease_seconds)
        self.gh = MemoryGH()
        self.gh.add_issue(7, "Make it faster", "The app is slow.", labels=["agent-z", "agent-z:queued"])
        self.origin = tmp_path / "remote" / f"{REPO}.git"
        self.progress: list[str] = []

        async def github(_: Run) -> Any:
            return self.gh

        self.deps = PipelineDeps(
            settings=self.settings, db=self.db, queue=self.queue, github=github,
            worktrees=Worktrees(self.settings), extra_agent_env=steps(*agent_steps),
            progress=lambda run, status: self.progress.append(status),
        )

    def enqueue(self, mode: str = "full") -> str:
        run, _ = self.queue.intake.enqueue(REPO, 7, installation_id=1, title="Make it faster", mode=mode)
        return run.id

    async def plan(self) -> Run:
        claimed = self.queue.leases.claim("planner", statuses=states.CLAIMABLE_BY_PLANNER, target="planning")
        assert claimed is not None
        return await plan_run(self.deps, *claimed)

    async def work(self) -> Run:
        claimed = self.queue.leases.claim("worker", statuses=states.CLAIMABLE_BY_WORKER)
        assert claimed is not None
        return await work_run(self.deps, *claimed)

    def ci(self, sha: str, conclusion: str, name: str = "tests") -> None:
        """Another App's check run completes on ``sha``: GitHub lists it and its webhook was recorded."""
        check_id = self.gh._id()
        check = {"id": check_id, "name": name, "head_sha": sha, "status": "completed",
                 "conclusion": conclusion, "app": {"slug": "ci"}, "output": {"summary": f"{name}: {conclusion}"}}
        self.gh.checks[check_id] = check
        with self.db.begin() as session:
            record_ci(session, REPO, check_run_record(check), own_slug=self.settings.github_app_slug)

    def check_names(self, sha: str) -> list[str]:
        return sorted(c["name"] for c in self.gh.checks.values() if c["head_sha"] == sha)


async def test_issue_goes_from_plan_through_review_and_ci_fix_to_done(tmp_path: Path) -> None:
    h = Harness(tmp_path, HAPPY)
    run_id = h.enqueue()

    planned = await h.plan()
    assert planned.status == "ready"
    assert planned.plan is not None
    assert planned.plan["files"] == ["src/app.py"]
    assert planned.cost_usd == pytest.approx(0.01)

    submitted = await h.work()
    assert submitted.status == "waiting_checks"
    assert submitted.lease_owner is None
    assert submitted.review_round == 2
    assert submitted.pr_number is not None
    first_head = submitted.head_sha
    assert first_head is not None
    assert sh("git", "rev-parse", f"refs/heads/{submitted.branch}", cwd=h.origin) == first_head
    assert h.check_names(first_head) == ["Agent-Z / plan", "Agent-Z / review"]
    review = next(c for c in h.gh.checks.values() if c["name"] == "Agent-Z / review")
    assert review["conclusion"] == "success"
    assert len(review["annotations"]) == 1
    assert h.gh.labels[7] == ["agent-z", "ongoing", "agent-z:running"]
    assert [e.payload["approved"] for e in h.queue.reads.events(run_id) if e.kind == "review"] == [False, True]
    assert "fixing" in h.progress

    h.ci(first_head, "failure")
    failing = await settle_ci(h.deps, h.gh, h.queue.reads.get(run_id))
    assert failing.status == "fixing_ci"
    assert failing.ci_round == 1
    assert failing.feedback is not None
    assert failing.feedback["checks"][0]["name"] == "tests"

    # The fix happens on "another host": no local worktree or mirror survives.
    await h.deps.worktrees.remove(run_id, REPO)
    shutil.rmtree(h.deps.worktrees.mirror_path(REPO))
    resubmitted = await h.work()
    assert resubmitted.status == "waiting_checks"
    assert resubmitted.head_sha != first_head
    assert resubmitted.head_sha is not None
    assert h.check_names(resubmitted.head_sha) == ["Agent-Z / ci-fix"]
    subjects = sh("git", "log", "--format=%s", f"refs/heads/{submitted.branch}", cwd=h.origin).splitlines()
    assert subjects[:2] == ["Address CI failure on #7 (round 1)", "Fix #7: Make it faster"]

    h.ci(resubmitted.head_sha, "success")
    done = await settle_ci(h.deps, h.gh, h.queue.reads.get(run_id))
    assert done.status == "done"
    assert len(h.gh.pulls) == 1
    assert len(h.gh.comments) == 1
    assert h.gh.labels[7] == ["agent-z"]
    assert "Done" in next(iter(h.gh.comments.values()))["body"]
    assert not (h.settings.state_dir / "worktrees" / run_id).exists()
    # The PR is still open: its files stay claimed until it is merged or closed.
    assert sorted(h.queue.reads.claims_of(run_id)) == [
        f"file:{REPO}:src/app.py", f"file:{REPO}:tests/test_app.py",
        f"module:{REPO}:app", f"module:{REPO}:src", f"module:{REPO}:tests",
    ]


async def test_happy_path_stays_within_eight_content_creating_requests(tmp_path: Path) -> None:
    h = Harness(tmp_path, [
        {"role": "task_lead", "json": PLAN},
        {"role": "developer", "write": [{"path": "src/app.py", "content": "print('fast')\n"}]},
        {"role": "reviewer", "json": APPROVE},
    ])
    run_id = h.enqueue()
    await h.plan()
    run = await h.work()
    assert run.head_sha is not None
    h.ci(run.head_sha, "success")
    assert (await settle_ci(h.deps, h.gh, h.queue.reads.get(run_id))).status == "done"
    assert len(h.gh.writes()) <= 8, h.gh.writes()


async def test_plan_only_waits_for_approval_with_the_plan_in_the_status_comment(tmp_path: Path) -> None:
    h = Harness(tmp_path, [{"role": "task_lead", "json": PLAN}])
    h.enqueue(mode="plan_only")
    run = await h.plan()
    assert run.status == "awaiting_approval"
    body = next(iter(h.gh.comments.values()))["body"]
    assert "Make the app print fast" in body
    assert "waiting for approval" in body


async def test_an_unparseable_plan_fails_the_run_and_keeps_the_raw_text(tmp_path: Path) -> None:
    h = Harness(tmp_path, [{"role": "task_lead", "text": "I would rather not plan."}])
    run_id = h.enqueue()
    run = await h.plan()
    assert run.status == "failed"
    assert run.plan is None
    assert h.queue.reads.get(run_id).plan_raw == "I would rather not plan."
    assert "no valid plan" in (run.error or "")


async def test_cost_guard_stops_before_the_next_call_would_exceed_the_limit(tmp_path: Path) -> None:
    h = Harness(tmp_path, [
        {"role": "task_lead", "json": PLAN, "cost_usd": 0.04},
        {"role": "developer", "write": [{"path": "src/app.py", "content": "x\n"}], "cost_usd": 0.01},
    ], max_cost_per_run_usd=0.05)
    run_id = h.enqueue()
    await h.plan()
    run = await h.work()
    assert run.status == "needs_human"
    assert "cost limit" in (run.error or "")
    assert h.queue.reads.get(run_id).cost_usd == pytest.approx(0.04)
    assert "agent-z:needs-human" in h.gh.labels[7]
    assert "agent-z:running" not in h.gh.labels[7]


async def test_review_that_never_approves_ends_in_needs_human(tmp_path: Path) -> None:
    h = Harness(tmp_path, [
        {"role": "task_lead", "json": PLAN},
        {"role": "developer", "write": [{"path": "src/app.py", "content": "x\n"}]},
        {"role": "reviewer", "json": BLOCKING},
    ], max_review_rounds=2)
    h.enqueue()
    await h.plan()
    run = await h.work()
    assert run.status == "needs_human"
    assert run.review_round == 2
    assert not h.gh.pulls


async def test_closed_issue_is_cancelled_before_development(tmp_path: Path) -> None:
    h = Harness(tmp_path, HAPPY)
    h.enqueue()
    await h.plan()
    h.gh.issues[7]["state"] = "closed"
    run = await h.work()
    assert run.status == "cancelled"
    assert "closed" in (run.error or "")
    assert not h.gh.pulls


async def test_a_worker_stopped_mid_develop_resumes_without_a_second_pr(tmp_path: Path) -> None:
    h = Harness(tmp_path, [
        {"role": "task_lead", "json": PLAN},
        {"role": "developer", "nth": 1, "sleep": 30, "write": [{"path": "src/app.py", "content": "slow\n"}]},
        {"role": "developer", "write": [{"path": "src/app.py", "content": "print('fast')\n"}]},
        {"role": "reviewer", "json": APPROVE},
    ])
    run_id = h.enqueue()
    await h.plan()
    claimed = h.queue.leases.claim("worker-1", statuses=states.CLAIMABLE_BY_WORKER)
    assert claimed is not None
    task = asyncio.create_task(work_run(h.deps, *claimed))
    await wait_for(lambda: scripted_calls(h.settings.state_dir, "developer") == 1, timeout=20,
                   what="the first developer call")
    assert h.queue.reads.get(run_id).status == "developing"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    interrupted = h.queue.reads.get(run_id)
    assert interrupted.status == "ready"
    assert interrupted.stage == "developing"
    assert interrupted.lease_owner is None

    run = await h.work()
    assert run.status == "waiting_checks"
    assert len(h.gh.pulls) == 1
    assert run.head_sha is not None
    assert sh("git", "show", f"{run.head_sha}:src/app.py", cwd=h.origin) == "print('fast')"


async def test_losing_the_lease_stops_the_agent_without_further_writes(tmp_path: Path) -> None:
    h = Harness(tmp_path, [
        {"role": "task_lead", "json": PLAN},
        {"role": "developer", "sleep": 30, "write": [{"path": "src/app.py", "content": "late\n"}]},
    ])
    run_id = h.enqueue()
    await h.plan()
    claimed = h.queue.leases.claim("worker-1", statuses=states.CLAIMABLE_BY_WORKER)
    assert claimed is not None
    task = asyncio.create_task(work_run(h.deps, *claimed))
    await wait_for(lambda: agent_started(h.queue, run_id, "developer"), timeout=20, what="the developer call")
    h.queue.moves.cancel(run_id, reason="operator stop")
    run = await asyncio.wait_for(task, 10)
    assert run.status == "cancelled"
    events_after = [e.kind for e in h.queue.reads.events(run_id)][-1]
    assert events_after == "transition"  # the operator's cancel is the last word
    assert not h.gh.pulls


async def test_worker_loop_once_processes_one_run_and_then_idles(tmp_path: Path) -> None:
    from workers.pool import run_planner, run_worker

    h = Harness(tmp_path, [*HAPPY[:2], {"role": "reviewer", "json": APPROVE}])
    run_id = h.enqueue()
    planned = await run_planner(h.settings, once=True, db=h.db, deps=h.deps)
    assert [o.after for o in planned] == ["ready"]
    worked = await run_worker(h.settings, once=True, db=h.db, deps=h.deps)
    assert [(o.run_id, o.before, o.after) for o in worked] == [(run_id, "ready", "waiting_checks")]
    assert await run_worker(h.settings, once=True, db=h.db, deps=h.deps) == []


async def test_stopping_the_worker_hands_the_run_back(tmp_path: Path) -> None:
    from workers.pool import run_worker

    h = Harness(tmp_path, [
        {"role": "task_lead", "json": PLAN},
        {"role": "developer", "sleep": 30, "write": [{"path": "src/app.py", "content": "x\n"}]},
    ])
    run_id = h.enqueue()
    await h.plan()
    stop = asyncio.Event()
    loop_task = asyncio.create_task(run_worker(h.settings, db=h.db, deps=h.deps, stop=stop))
    await wait_for(lambda: agent_started(h.queue, run_id, "developer"), timeout=20, what="the developer call")
    stop.set()
    assert await asyncio.wait_for(loop_task, 10) == []
    run = h.queue.reads.get(run_id)
    assert run.status == "ready"
    assert run.lease_owner is None
    assert run.stage == "developing"


async def test_deliver_issue_drives_one_issue_to_done_in_the_foreground(tmp_path: Path) -> None:
    from workers.pool import deliver_issue

    h = Harness(tmp_path, [*HAPPY[:2], {"role": "reviewer", "json": APPROVE}])
    lines: list[str] = []

    async def ci_passes_once_pushed() -> None:
        def pushed() -> Run | None:
            runs = h.queue.reads.list_runs()
            return runs[0] if runs and runs[0].head_sha and runs[0].status == "waiting_checks" else None

        run = await wait_for(pushed, timeout=60, what="the change pushed and waiting for checks")
        h.gh.checks[1] = {"id": 1, "name": "tests", "head_sha": run.head_sha, "status": "completed",
                          "conclusion": "success", "app": {"slug": "ci"}, "output": {"summary": "ok"}}

    ci = asyncio.create_task(ci_passes_once_pushed())
    run = await asyncio.wait_for(
        deliver_issue(h.settings, REPO, 7, echo=lines.append, db=h.db, deps=h.deps, ci_poll_seconds=0.05), 60)
    await ci
    assert run.status == "done"
    assert run.pr_number is not None
    statuses = [line.split(": ", 1)[1] for line in lines if line.startswith(run.id + ": ")]
    assert statuses == ["queued", "ready", "waiting_checks", "done"]


# Against the fake GitHub over real HTTP, with its simulated CI running pytest on each push.

from tests.fakehub_fixtures import APP_ID, APP_SLUG, app_private_key, fakehub, webhook_sink  # noqa: E402, F401

APP_FILES = {
    "app.py": "def speed():\n    return 1\n",
    "test_app.py": "from app import speed\n\n\ndef test_speed():\n    assert speed() >= 1\n",
}
SLOW = "def speed():\n    return 0\n"  # breaks the repository's test: CI fails
FAST = "def speed():\n    return 2\n"


async def test_fakehub_delivery_with_a_ci_failure_fixed_then_done(
    tmp_path: Path, fakehub: Any, app_private_key: str  # noqa: F811
) -> None:
    from agentz_app.bootstrap import open_services
    from workers.pool import deliver_issue

    await fakehub.repos.create("acme/widgets", APP_FILES)
    issue = fakehub.issues.create("acme/widgets", "Make speed faster", "speed() should return more",
                                 labels=["agent-z"])
    number = int(issue["number"])
    settings = Settings.load(
        None, database_url=f"sqlite:///{tmp_path / 'e2e.db'}", state_dir=tmp_path / "state",
        github_app_id=APP_ID, github_private_key=app_private_key, github_app_slug=APP_SLUG,
        github_api_url=fakehub.api_url, git_url_template=fakehub.git_url_template, default_backend="scripted",
        heartbeat_seconds=1, lease_seconds=30, ci_quiet_seconds=0.5,  # fakehub's CI has no late suites
    )
    db = Database.from_url(settings.database_url)
    migrate(db)
    plan = {**PLAN, "files": ["app.py"]}
    lines: list[str] = []
    try:
        async with open_services(settings, db) as services:
            deps = services.pipeline()
            deps.extra_agent_env = steps(
                {"role": "task_lead", "json": plan},
                {"role": "developer", "call": 1, "write": [{"path": "app.py", "content": SLOW}]},
                {"role": "developer", "call": 2, "write": [{"path": "app.py", "content": FAST}]},
                {"role": "reviewer", "json": APPROVE},
            )
            run = await asyncio.wait_for(
                deliver_issue(settings, "acme/widgets", number, echo=lines.append, db=db, deps=deps,
                              ci_poll_seconds=0.2), 120)
    finally:
        db.dispose()
    assert run.status == "done", lines
    assert run.ci_round == 1
    assert run.pr_number is not None
    assert len(fakehub.pulls.find("acme/widgets", state="all")) == 1
    comments = fakehub.comments.find("acme/widgets", number)
    assert len(comments) == 1
    assert "Done" in comments[0]["body"]
    checks = {c["name"] for c in fakehub.state.data["check_runs"].values()}
    assert {"Agent-Z / plan", "Agent-Z / review", "Agent-Z / ci-fix"} <= checks
    labels = fakehub.state.issue("acme/widgets", number)["labels"]
    assert "agent-z:running" not in labels
    assert "ongoing" not in labels
    statuses = [line.split(": ", 1)[1] for line in lines if line.startswith(run.id + ": ")]
    assert statuses[-3:] == ["fixing_ci", "waiting_checks", "done"]


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _is_scripted_agent(pid: int) -> bool:
    """True for the scripted agent's process (sandboxed or not), not for a git call of the worker."""
    try:
        return b"child process of the scripted backend" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


async def test_worker_killed_after_its_checkpoint_is_resumed_without_a_second_pr(
    tmp_path: Path, fakehub: Any, app_private_key: str  # noqa: F811
) -> None:
    import os
    import signal
    import sys

    from agentz_app.bootstrap import open_services
    from agentz_app.reconciler import reconcile_once

    await fakehub.repos.create("acme/widgets", APP_FILES, ci_command=None)
    number = int(fakehub.issues.create("acme/widgets", "Make speed faster", "x", labels=["agent-z"])["number"])
    agent_steps = json.dumps([
        {"role": "task_lead", "json": {**PLAN, "files": ["app.py"]}},
        {"role": "developer", "write": [{"path": "app.py", "content": FAST}]},
        {"role": "reviewer", "nth": 1, "sleep": 120, "json": APPROVE},
        {"role": "reviewer", "json": APPROVE},
    ])
    env = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'kill.db'}", "STATE_DIR": str(tmp_path / "state"),
        "GITHUB_APP_ID": str(APP_ID), "GITHUB_PRIVATE_KEY": app_private_key, "GITHUB_APP_SLUG": APP_SLUG,
        "GITHUB_API_URL": fakehub.api_url, "GIT_URL_TEMPLATE": fakehub.git_url_template,
        "DEFAULT_BACKEND": "scripted", "LEASE_SECONDS": "2", "HEARTBEAT_SECONDS": "0.5", "LOG_FORMAT": "json",
    }
    settings = Settings.load(None, **{k.lower(): v for k, v in env.items()})
    db = Database.from_url(settings.database_url)
    migrate(db)
    queue = RunQueue(db, lease_seconds=settings.lease_seconds)
    try:
        async with open_services(settings, db) as services:
            deps = services.pipeline()
            deps.extra_agent_env = {"AGENTZ_SCRIPTED_STEPS": agent_steps}
            run, _ = queue.intake.enqueue("acme/widgets", number, title="Make speed faster")
            claimed = queue.leases.claim("planner", statuses=states.CLAIMABLE_BY_PLANNER, target="planning")
            assert claimed is not None
            assert (await plan_run(deps, *claimed)).status == "ready"

            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "agentz_app", "run-next", cwd=tmp_path,
                env={**os.environ, **env, "AGENTZ_SCRIPTED_STEPS": agent_steps},
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
            def reviewer_running() -> list[int]:
                if queue.reads.get(run.id).status != "reviewing":
                    return []
                children = _children(proc.pid)
                return children if any(_is_scripted_agent(child) for child in children) else []

            agent = await wait_for(reviewer_running, timeout=20, what="the worker's reviewer agent running")
            # the developer's work is checkpointed
            for child in agent:  # the agent runs in its own process group; end it with its worker
                os.killpg(child, signal.SIGKILL)
            os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()

            past_the_lease = now() + settings.lease_seconds + 1
            report = reconcile_once(db, settings, clock=lambda: past_the_lease)
            assert run.id in report.as_dict()["resumed"], report.as_dict()
            resumed = queue.reads.get(run.id)
            assert resumed.status == "ready"
            assert resumed.stage == "reviewing"

            claimed = queue.leases.claim("worker-2", statuses=states.CLAIMABLE_BY_WORKER)
            assert claimed is not None
            finished = await work_run(deps, *claimed)
    finally:
        db.dispose()
    assert finished.status == "waiting_checks"
    assert len(fakehub.pulls.find("acme/widgets", state="all")) == 1
    assert len(fakehub.comments.find("acme/widgets", number)) == 1


async def test_a_policy_violation_the_developer_keeps_ends_needs_human_and_nothing_is_pushed(tmp_path: Path) -> None:
    workflow = {"path": ".github/workflows/x.yml", "content": "on: push\n"}
    h = Harness(tmp_path, [
        {"role": "task_lead", "json": PLAN},
        {"role": "developer", "write": [{"path": "src/app.py", "content": "print('fast')\n"}, workflow]},
    ])
    run_id = h.enqueue()
    await h.plan()
    run = await h.work()

    assert run.status == "needs_human"
    assert ".github/workflows/x.yml (workflow)" in (run.error or "")
    prompts = [e for e in h.queue.reads.events(run_id) if e.kind == "content_policy"]
    assert [e.payload["fixed"] for e in prompts] == [False, False]  # refused, asked once, still refused
    refs = sh("git", "for-each-ref", "--format=%(refname)", cwd=h.origin).splitlines()
    assert not any("agent-z" in ref for ref in refs)  # no branch, no checkpoint left the host
    assert not h.gh.pulls
    assert "x.yml" in next(iter(h.gh.comments.values()))["body"]


async def test_a_violation_the_developer_removes_is_delivered_without_it(tmp_path: Path) -> None:
    h = Harness(tmp_path, [
        {"role": "task_lead", "json": PLAN},
        {"role": "developer", "match": "content policy", "run": ["rm -f key.pem"]},
        {"role": "developer", "write": [
            {"path": "src/app.py", "content": "print('fast')\n"},
            {"path": "key.pem", "content": "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n"},
        ]},
        {"role": "reviewer", "json": APPROVE},
    ])
    h.enqueue()
    await h.plan()
    run = await h.work()

    assert run.status == "waiting_checks", run.error
    files = sh("git", "show", "--name-only", "--format=", f"refs/heads/{run.branch}", cwd=h.origin).splitlines()
    assert files == ["src/app.py"]


async def test_a_branch_that_is_not_ours_ends_the_run_and_the_worker_carries_on(tmp_path: Path) -> None:
    h = Harness(tmp_path, HAPPY)
    run_id = h.enqueue()
    await h.plan()
    submitted = await h.work()
    assert submitted.head_sha is not None
    # The reconciler adopted someone else's pull request: its head branch is theirs.
    with h.db.begin() as session:
        row = session.get(Run, run_id)
        assert row is not None
        row.branch = "evil"
    h.ci(submitted.head_sha, "failure")
    await settle_ci(h.deps, h.gh, h.queue.reads.get(run_id))

    stopped = await h.work()

    assert stopped.status == "needs_human"
    assert "'evil': not an Agent-Z branch" in (stopped.error or "")
    assert sh("git", "rev-parse", f"refs/heads/{submitted.branch}", cwd=h.origin) == submitted.head_sha
