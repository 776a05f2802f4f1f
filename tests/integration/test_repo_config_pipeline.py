"""The repository's .github/agent-z.yml at work in the pipeline: setup commands, the local test, limits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from agentz_app.repo_config import stored_config
from tests.conftest import needs_sandbox
from tests.integration.test_coordinator import REPO, sh
from tests.integration.test_pipeline import APPROVE, PLAN, Harness

SETUP_DONE = 'echo "deps installed" > "$HOME/setup-done"'


def commit_config(h: Harness, tmp_path: Path, config: dict[str, Any] | str) -> str:
    """Commit .github/agent-z.yml on the origin's default branch; return the commit."""
    clone = tmp_path / "config-clone"
    sh("git", "clone", "--quiet", str(h.origin), str(clone), cwd=tmp_path)
    target = clone / ".github" / "agent-z.yml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    sh("git", "add", "-A", cwd=clone)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@e", "commit", "--quiet", "-m", "configure", cwd=clone)
    sh("git", "push", "--quiet", "origin", "HEAD:trunk", cwd=clone)
    return sh("git", "rev-parse", "HEAD", cwd=clone)


def pushed_file(h: Harness, branch: str, path: str) -> str:
    return sh("git", "show", f"refs/heads/{branch}:{path}", cwd=h.origin)


def agent_roles(h: Harness, run_id: str) -> list[str]:
    return [e.payload["role"] for e in h.queue.reads.events(run_id) if e.kind == "agent_call"]


@needs_sandbox
async def test_setup_commands_run_in_the_agents_sandbox_before_the_first_developer_call(tmp_path: Path) -> None:
    h = Harness(tmp_path, [
        {"role": "task_lead", "json": PLAN},
        {"role": "developer", "run": ['cp "$HOME/setup-done" src/app.py']},
        {"role": "reviewer", "json": APPROVE},
    ])
    db_file = tmp_path / "db.sqlite"
    commit_config(h, tmp_path, {"setup": [SETUP_DONE, f"test ! -e '{db_file}'", "echo setup-finished"]})
    run_id = h.enqueue()
    await h.plan()
    run = await h.work()
    assert run.status == "waiting_checks", run.error
    assert run.branch is not None
    assert pushed_file(h, run.branch, "src/app.py") == "deps installed"
    setup_log = (h.settings.logs_dir / "runs" / run_id / "setup.log").read_text()
    assert "setup-finished" in setup_log
    assert "$ echo setup-finished" in setup_log
    assert [e.payload["passed"] for e in h.queue.reads.events(run_id) if e.kind == "setup"] == [True]


async def test_a_failing_setup_command_needs_a_human_with_the_command_and_its_output(tmp_path: Path) -> None:
    h = Harness(tmp_path, [
        {"role": "task_lead", "json": PLAN},
        {"role": "developer", "write": [{"path": "src/app.py", "content": "x\n"}]},
    ])
    failing = 'echo "resolver: no package widgets-core" >&2; exit 3'
    commit_config(h, tmp_path, {"setup": ["echo fine", failing, "echo never"]})
    run_id = h.enqueue()
    await h.plan()
    run = await h.work()
    assert run.status == "needs_human"
    assert "setup command failed (exit 3)" in (run.error or "")
    assert failing in (run.error or "")
    assert "resolver: no package widgets-core" in (run.error or "")
    assert agent_roles(h, run_id) == ["task_lead"]
    assert "never" not in (h.settings.logs_dir / "runs" / run_id / "setup.log").read_text().replace("echo never", "")


TEST_COMMAND = "grep -q fixed src/app.py || { echo 'FAILED test_app: expected fixed'; exit 1; }"


async def test_a_failing_local_test_sends_the_change_back_to_the_developer(tmp_path: Path) -> None:
    h = Harness(tmp_path, [
        {"role": "task_lead", "json": PLAN},
        {"role": "developer", "call": 1, "write": [{"path": "src/app.py", "content": "print('fast')\n"}]},
        {"role": "developer", "call": 2, "match": "FAILED test_app: expected fixed",
         "write": [{"path": "src/app.py", "content": "print('fixed')\n"}]},
        {"role": "reviewer", "json": APPROVE},
    ])
    commit_config(h, tmp_path, {"test": TEST_COMMAND})
    run_id = h.enqueue()
    await h.plan()
    run = await h.work()
    assert run.status == "waiting_checks", run.error
    assert run.branch is not None
    assert pushed_file(h, run.branch, "src/app.py") == "print('fixed')"
    assert [e.payload["passed"] for e in h.queue.reads.events(run_id) if e.kind == "local_test"] == [False, True]
    assert agent_roles(h, run_id) == ["task_lead", "developer", "reviewer", "developer", "reviewer"]
    assert "fixing" in h.progress


async def test_a_local_test_that_never_passes_needs_a_human_after_max_review_rounds(tmp_path: Path) -> None:
    h = Harness(tmp_path, [
        {"role": "task_lead", "json": PLAN},
        {"role": "developer", "write": [{"path": "src/app.py", "content": "print('slow')\n"}]},
        {"role": "reviewer", "json": APPROVE},
    ], max_review_rounds=2)
    commit_config(h, tmp_path, {"test": TEST_COMMAND})
    run_id = h.enqueue()
    await h.plan()
    run = await h.work()
    assert run.status == "needs_human"
    assert not h.gh.pulls
    assert "after 2 rounds, test command failed (exit 1):" in (run.error or "")
    assert [e.payload["passed"] for e in h.queue.reads.events(run_id) if e.kind == "local_test"] == [False, False]


async def test_an_invalid_file_fails_the_config_check_and_the_run_uses_the_hosts_settings(tmp_path: Path) -> None:
    h = Harness(tmp_path, [
        {"role": "task_lead", "json": PLAN},
        {"role": "developer", "write": [{"path": "src/app.py", "content": "print('fast')\n"}]},
        {"role": "reviewer", "json": APPROVE},
    ])
    head = commit_config(h, tmp_path, "setup:\n  - exit 1\nparallelism: many\n")
    h.enqueue()
    await h.plan()
    run = await h.work()
    assert run.status == "waiting_checks", run.error  # the invalid setup was not applied
    config_checks = [c for c in h.gh.checks.values() if c["name"] == "Agent-Z / config"]
    assert len(config_checks) == 1  # planner and worker read the same file: reported once
    [check] = config_checks
    assert check["head_sha"] == head
    assert check["conclusion"] == "failure"
    assert [(n["path"], n["start_line"]) for n in check["annotations"]] == [(".github/agent-z.yml", 3)]
    stored = stored_config(h.db, REPO)
    assert stored is not None
    assert stored.commit_sha == head
    assert stored.config is None
    assert not stored.valid


@pytest.mark.parametrize(("host_limit", "repo_limit"), [(10.0, 0.05), (0.05, 10.0)])
async def test_the_lower_of_the_host_and_repository_budgets_stops_the_run(
    tmp_path: Path, host_limit: float, repo_limit: float
) -> None:
    h = Harness(tmp_path, [
        {"role": "task_lead", "json": PLAN, "cost_usd": 0.04},
        {"role": "developer", "write": [{"path": "src/app.py", "content": "x\n"}], "cost_usd": 0.01},
    ], max_cost_per_run_usd=host_limit)
    commit_config(h, tmp_path, {"max_cost_per_run_usd": repo_limit})
    run_id = h.enqueue()
    await h.plan()
    run = await h.work()
    assert run.status == "needs_human"
    assert "(MAX_COST_PER_RUN_USD is $0.05)" in (run.error or "")
    assert agent_roles(h, run_id) == ["task_lead"]


async def test_a_repository_cannot_allow_workflow_changes_the_host_forbids(tmp_path: Path) -> None:
    workflow = {"path": ".github/workflows/deploy.yml", "content": "on: push\n"}
    h = Harness(tmp_path, [
        {"role": "task_lead", "json": PLAN},
        {"role": "developer", "write": [workflow, {"path": "src/app.py", "content": "x\n"}]},
    ])
    commit_config(h, tmp_path, {"allow_workflow_changes": True})
    h.enqueue()
    await h.plan()
    run = await h.work()
    assert run.status == "needs_human"
    assert "workflow" in (run.error or "")
    assert not h.gh.pulls


async def test_the_repository_chooses_the_backend_of_a_role(tmp_path: Path) -> None:
    h = Harness(tmp_path, [{"role": "task_lead", "json": PLAN}])
    h.deps.extra_agent_env = {**h.deps.extra_agent_env, "AGENTZ_CLI_DIR": str(tmp_path / "no-clis")}
    commit_config(h, tmp_path, {"backends": {"task_lead": "codex"}})
    h.enqueue()
    run = await h.plan()
    assert run.status == "queued"
    assert "codex not found in AGENTZ_CLI_DIR" in (run.error or "")
