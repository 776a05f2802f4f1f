"""Every spelling of the earlier CLI reaches today's command with its arguments."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from agentz_app import cli as cli_module
from agentz_app.cli import SEED_ALIASES, cli, rewrite_aliases
from agentz_app.config import Settings
from agentz_app.reconciler import ReconcileReport
from agentz_app.store.db import Database
from agentz_app.store.runs import RunQueue

Calls = list[tuple[str, dict[str, Any]]]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name in ("GITHUB_REPO", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return {"DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", "STATE_DIR": str(tmp_path / ".agent-z"),
            "LOG_FORMAT": "json", "GITHUB_REPO": "octo/demo"}


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """Replace every long-running service function with one that records how it was called."""
    seen: Calls = []
    finished = SimpleNamespace(id="r1", status="done", pr_number=7, issue_number=3)

    async def run_role(settings: Settings, role: str, *, once: bool = False) -> list[Any]:
        seen.append(("run_role", {"role": role, "once": once}))
        return []

    async def deliver_issue(settings: Settings, repo: str, number: int, **_: Any) -> Any:
        seen.append(("deliver_issue", {"repo": repo, "number": number}))
        return finished

    async def run_loop(settings: Settings, db: Database, count: int, *, force: bool, **_: Any) -> list[Any]:
        seen.append(("run_loop", {"count": count, "force": force}))
        return [finished]

    async def run_scheduler(settings: Settings) -> None:
        seen.append(("run_scheduler", {}))

    async def run_schedule_once(settings: Settings, *, force: bool = False) -> list[Any]:
        seen.append(("run_schedule_once", {"force": force}))
        return []

    def run_serve(settings: Settings, db: Database, *, workers: int | None, **_: Any) -> None:
        seen.append(("run_serve", {"workers": workers}))

    def run_reconciler(settings: Settings) -> None:
        seen.append(("run_reconciler", {}))

    def reconcile_once(db: Database, settings: Settings) -> ReconcileReport:
        seen.append(("reconcile_once", {}))
        return ReconcileReport()

    # The command line starts every role through the composition root.
    monkeypatch.setattr("agentz_app.bootstrap.run_role", run_role)
    monkeypatch.setattr("agentz_app.bootstrap.deliver_issue", deliver_issue)
    monkeypatch.setattr("agentz_app.bootstrap.run_loop", run_loop)
    monkeypatch.setattr("agentz_app.bootstrap.run_scheduler", run_scheduler)
    monkeypatch.setattr("agentz_app.bootstrap.run_schedule_once", run_schedule_once)
    monkeypatch.setattr("agentz_app.bootstrap.run_serve", run_serve)
    monkeypatch.setattr("agentz_app.bootstrap.run_reconciler", run_reconciler)
    monkeypatch.setattr("agentz_app.reconciler.reconcile_once", reconcile_once)
    monkeypatch.setattr(cli_module, "_doctor_checks", lambda *args, **kwargs: [])
    monkeypatch.setattr(cli_module, "_require_ready", lambda *args, **kwargs: None)
    return seen


def invoke(env: dict[str, str], *args: str) -> Any:
    return CliRunner().invoke(cli, ["--env-file", "/nonexistent", *rewrite_aliases(args)], env=env)


# (seed spelling with arguments, the service call it must make)
SPELLINGS: list[tuple[tuple[str, ...], tuple[str, dict[str, Any]]]] = [
    (("--serve",), ("run_serve", {"workers": None})),
    (("--serve", "--workers", "3"), ("run_serve", {"workers": 3})),
    (("--issue", "3"), ("deliver_issue", {"repo": "octo/demo", "number": 3})),
    (("--loop", "2"), ("run_loop", {"count": 2, "force": False})),
    (("--loop", "2", "--force"), ("run_loop", {"count": 2, "force": True})),
    (("--planner",), ("run_role", {"role": "planner", "once": False})),
    (("--worker",), ("run_role", {"role": "worker", "once": False})),
    (("--plan-next",), ("run_role", {"role": "planner", "once": True})),
    (("--run-next",), ("run_role", {"role": "worker", "once": True})),
    (("--scheduler",), ("run_scheduler", {})),
    (("--schedule-once",), ("run_schedule_once", {"force": False})),
    (("--schedule-once", "--force"), ("run_schedule_once", {"force": True})),
    (("--reconciler",), ("run_reconciler", {})),
    (("--reconcile-once",), ("reconcile_once", {})),
]


@pytest.mark.parametrize(("spelling", "expected"), SPELLINGS, ids=[" ".join(s) for s, _ in SPELLINGS])
def test_each_role_spelling_runs_its_command(env: dict[str, str], calls: Calls, spelling: tuple[str, ...],
                                             expected: tuple[str, dict[str, Any]]) -> None:
    result = invoke(env, *spelling)
    assert result.exit_code == 0, result.output
    assert calls == [expected]


def test_run_queue_spellings_enqueue_list_inspect_cancel_and_resume(env: dict[str, str]) -> None:
    enqueued = invoke(env, "--enqueue", "5", "--force")
    assert enqueued.exit_code == 0, enqueued.output
    db = Database.from_url(env["DATABASE_URL"])
    try:
        [run] = RunQueue(db).reads.list_runs()
        assert run.force is True
        listed = invoke(env, "--list-runs")
        inspected = invoke(env, "--inspect", run.id)
        cancelled = invoke(env, "--cancel", run.id)
        resumed = invoke(env, "--resume", run.id)
    finally:
        db.dispose()
    assert run.id in listed.output
    assert "octo/demo#5" in inspected.output
    assert cancelled.output.strip() == f"run {run.id} is cancelled"
    assert resumed.output.strip() == f"run {run.id} is queued"


def test_every_seed_spelling_is_tested() -> None:
    tested = {spelling[0] for spelling, _ in SPELLINGS}
    tested |= {"--enqueue", "--list-runs", "--inspect", "--cancel", "--resume", "--help-all", "--demo", "--top"}
    assert set(SEED_ALIASES) == tested


def test_a_spelling_after_the_env_file_option_is_still_translated() -> None:
    assert rewrite_aliases(["--env-file", "x.env", "--worker"]) == ["--env-file", "x.env", "worker"]
    assert rewrite_aliases(["runs", "--worker"]) == ["runs", "--worker"]


def test_help_all_lists_every_command_and_every_setting_with_its_default(env: dict[str, str]) -> None:
    result = invoke(env, "--help-all")
    assert result.exit_code == 0, result.output
    for variable in Settings.model_fields:
        assert f"\n  {variable.upper()} " in result.output
    assert "MAX_COST_PER_RUN_USD" in result.output
    assert re.search(r"\n  GITHUB_RETRY_ATTEMPTS +3\n", result.output)
    for command in ("serve", "planner", "worker", "scheduler", "reconciler", "plan-next", "run-next",
                    "schedule-once", "reconcile-once", "runs resume", "deliveries retry"):
        assert f"\n  {command} " in result.output
    assert "(also --list-runs)" in result.output
