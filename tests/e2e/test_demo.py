"""`agentz demo` end to end: real processes, real webhooks, real git, the scripted agent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentz_app.demo import scenario

pytestmark = pytest.mark.slow


def test_demo_delivers_the_deliverable_issues_and_explains_the_rest(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("GITHUB_", "DATABASE_"))}
    env["TMPDIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "agentz_app", "demo", "--json", "--timeout", "150"],
        capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout)

    assert set(report) >= {"issues", "github_writes", "seconds"}
    by_number = {issue["number"]: issue for issue in report["issues"]}
    assert sorted(by_number) == [issue.number for issue in scenario.ISSUES]
    for issue in scenario.ISSUES:
        outcome = by_number[issue.number]
        assert outcome["title"] == issue.title
        assert outcome["verdict"] == issue.expected, outcome
        if issue.expected == "ran":
            assert outcome["run_status"] == "done"
            assert isinstance(outcome["pr"], int)
            assert outcome["check_runs"]["ci"] == "success"
            assert outcome["check_runs"]["Agent-Z / plan"] == "success"
            assert outcome["status_comments"] == 1
        else:
            assert outcome["run_status"] is None
            assert outcome["pr"] is None
            assert outcome["status_comments"] == 0
    # The review round trip on #1 and the CI-fix loop on #2 both happened.
    assert by_number[1]["check_runs"]["Agent-Z / review"] == "success"
    assert by_number[2]["check_runs"]["Agent-Z / ci-fix"] == "success"
    # A loose bound that catches write loops; `python -m bench writes-per-pr` measures the real figure.
    assert report["github_writes"] <= 12 * len(scenario.DELIVERABLE)
    # Nothing is left behind: the temporary workspace is gone.
    assert not list(tmp_path.glob("agentz-demo-*"))


def _cli_dir() -> str | None:
    from agentz_app.demo.model import installed_cli_dir

    return installed_cli_dir()


@pytest.mark.parametrize("backend", ["claude", "codex", "opencode"])
def test_demo_with_a_real_agent_cli_and_the_fake_model(tmp_path: Path, backend: str) -> None:
    cli_dir = _cli_dir()
    if cli_dir is None or not (Path(cli_dir) / "node_modules" / ".bin" / backend).exists():
        pytest.skip(f"{backend} CLI not installed (bash scripts/install-agent-clis.sh)")
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("GITHUB_", "DATABASE_", "ANTHROPIC_", "OPENAI_", "CODEX_"))}
    env.update(TMPDIR=str(tmp_path), AGENTZ_CLI_DIR=cli_dir)
    result = subprocess.run(
        [sys.executable, "-m", "agentz_app", "demo", "--json", "--backend", backend, "--timeout", "200"],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout)
    delivered = [issue for issue in report["issues"] if issue["verdict"] == "ran"]
    assert sorted(issue["number"] for issue in delivered) == list(scenario.DELIVERABLE)
    assert all(issue["run_status"] == "done" and issue["check_runs"]["ci"] == "success" for issue in delivered)
