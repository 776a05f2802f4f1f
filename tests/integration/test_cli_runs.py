from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from agentz_app.cli import cli, rewrite_aliases
from agentz_app.domain.states import CLAIMABLE_BY_PLANNER, Status
from agentz_app.store.db import Database
from agentz_app.store.models import Run
from agentz_app.store.runs import RunQueue


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name in ("GITHUB_REPO", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "STATE_DIR": str(tmp_path / ".agent-z"),
        "LOG_FORMAT": "json",
    }


@pytest.fixture
def queue(env: dict[str, str]) -> Iterator[RunQueue]:
    db = Database.from_url(env["DATABASE_URL"])
    yield RunQueue(db)
    db.dispose()


def invoke(env: dict[str, str], *args: str) -> Result:
    result = CliRunner().invoke(cli, ["--env-file", "/nonexistent", *rewrite_aliases(args)], env=env)
    return result


def test_enqueue_creates_one_run_per_live_issue(env: dict[str, str], queue: RunQueue) -> None:
    first = invoke(env, "enqueue", "5", "--repo", "octo/demo")
    again = invoke(env, "enqueue", "5", "--repo", "octo/demo")
    assert first.exit_code == 0
    assert "enqueued run" in first.output
    assert again.exit_code == 0
    assert "already queued" in again.output
    [run] = queue.reads.list_runs()
    assert (run.repo, run.issue_number, run.mode, run.requested_by) == ("octo/demo", 5, "full", "cli")


def test_enqueue_uses_github_repo_and_plan_only(env: dict[str, str], queue: RunQueue) -> None:
    result = invoke({**env, "GITHUB_REPO": "octo/other"}, "--enqueue", "9", "--plan-only", "--force")
    assert result.exit_code == 0, result.output
    [run] = queue.reads.list_runs()
    assert (run.repo, run.mode, run.force) == ("octo/other", "plan_only", True)


def test_enqueue_without_a_repository_is_a_clear_error(env: dict[str, str]) -> None:
    result = invoke(env, "enqueue", "5")
    assert result.exit_code == 2
    assert "GITHUB_REPO" in result.output


def test_enqueue_rejects_a_malformed_repository(env: dict[str, str]) -> None:
    result = invoke(env, "enqueue", "5", "--repo", "not a repo")
    assert result.exit_code == 1
    assert "owner/name" in result.output


def test_runs_list_shows_a_table_and_json(env: dict[str, str], queue: RunQueue) -> None:
    invoke(env, "enqueue", "1", "--repo", "octo/demo")
    invoke(env, "enqueue", "2", "--repo", "octo/demo")
    claimed = queue.leases.claim("host:1:1", statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING)
    assert claimed is not None
    table = invoke(env, "runs", "list")
    assert table.exit_code == 0, table.output
    header, *rows = table.output.splitlines()
    assert header.split() == ["ID", "ISSUE", "STATUS", "STAGE", "LEASE", "AGE", "PR", "ERROR"]
    assert len(rows) == 2
    assert any("host:1:1 (" in row for row in rows)
    planning = json.loads(invoke(env, "--list-runs", "--status", "planning", "--json").stdout)
    assert [(r["id"], r["status"]) for r in planning] == [(claimed[0].id, "planning")]


def test_runs_list_rejects_unknown_status(env: dict[str, str]) -> None:
    result = invoke(env, "runs", "list", "--status", "sleeping")
    assert result.exit_code == 2
    assert "sleeping" in result.output


def test_inspect_shows_state_and_timeline(env: dict[str, str], queue: RunQueue) -> None:
    invoke(env, "enqueue", "3", "--repo", "octo/demo")
    [run] = queue.reads.list_runs()
    claimed = queue.leases.claim("w1", statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING)
    assert claimed is not None
    queue.moves.transition(claimed[1], Status.READY, plan={"summary": "Rename the flag", "steps": ["edit cli.py"]})
    text = invoke(env, "runs", "inspect", run.id[:8])
    assert text.exit_code == 0, text.output
    assert "status: ready" in text.output
    assert "Rename the flag" in text.output
    assert "- edit cli.py" in text.output
    assert "enqueued" in text.output
    assert "planning -> ready" in text.output
    data = json.loads(invoke(env, "--inspect", run.id, "--json").stdout)
    assert [e["kind"] for e in data["events"]] == ["enqueued", "claimed", "transition"]
    assert data["claims"] == ["issue:octo/demo#3"]


def test_inspect_of_an_unknown_run_fails_cleanly(env: dict[str, str]) -> None:
    assert invoke(env, "migrate").exit_code == 0
    result = invoke(env, "runs", "inspect", "abc123")
    assert result.exit_code == 1
    assert "not found" in result.output


def test_cancel_then_resume(env: dict[str, str], queue: RunQueue) -> None:
    invoke(env, "enqueue", "4", "--repo", "octo/demo")
    [run] = queue.reads.list_runs()
    claimed = queue.leases.claim("w1", statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING)
    assert claimed is not None
    cancelled = invoke(env, "runs", "cancel", run.id)
    assert cancelled.exit_code == 0
    assert "cancelled" in cancelled.output
    assert queue.reads.claims_of(run.id) == []
    resumed = invoke(env, "--resume", run.id)
    assert resumed.exit_code == 0
    assert "queued" in resumed.output
    assert queue.reads.claims_of(run.id) == ["issue:octo/demo#4"]
    refused = invoke(env, "runs", "resume", run.id)
    assert refused.exit_code == 1
    assert "only failed" in refused.output


def test_reconcile_once_reports_json(env: dict[str, str], queue: RunQueue) -> None:
    invoke(env, "enqueue", "6", "--repo", "octo/demo")
    with queue.db.begin() as session:  # a planner that died long ago
        session.query(Run).update({"status": "planning", "lease_owner": "w", "lease_expires_at": 1.0})
    result = invoke(env, "reconcile-once", "--json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["requeued"]) == 1
    assert invoke(env, "reconcile-once").stdout.strip() == "nothing to do"
