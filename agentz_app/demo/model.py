"""The fake model's scenario for ``agentz demo --backend claude|codex|opencode``.

The same issues as the scripted demo, answered by the in-package fake model server so
a real agent CLI edits the files, and the same Scheduler Agent answers.
"""

from __future__ import annotations

import glob
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from agentz_app.demo import scenario
from agentz_app.fakemodel.scenario import Scenario, ScenarioStep, issue_scenario

FIXED_CALC = scenario.FILES["calc.py"].replace(scenario.BROKEN_ADD, scenario.FIXED_ADD)


def model_scenario() -> Scenario:
    """Plans, file writes and approving reviews for issues #1 and #2, plus the ranking."""
    approve = {"verdict": "approve", "findings": [], "summary": "The change does what the issue asks."}
    steps = [
        ScenarioStep(role="scheduler", regex=step.get("regex"), json_value=step["json"])
        for step in scenario.ScriptBuilder().build() if step["role"] == "scheduler"
    ]
    steps += issue_scenario(
        1, plan=scenario.plan_for(1), files={"calc.py": FIXED_CALC}, review=approve,
        developer_text="add() now returns the sum.")
    steps += issue_scenario(
        2, plan=scenario.plan_for(2),
        files={"stats.py": scenario.STATS_GUARDED, "test_stats.py": scenario.STATS_TEST, "calc.py": FIXED_CALC},
        review=approve, developer_text="Added stats.mean() with tests; fixed add() so the suite passes.")
    return Scenario(title="Agent-Z demo", steps=steps)


def installed_cli_dir() -> str | None:
    """``AGENTZ_CLI_DIR``, or a complete folder left by ``scripts/install-agent-clis.sh``."""
    if os.environ.get("AGENTZ_CLI_DIR"):
        return os.environ["AGENTZ_CLI_DIR"]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "agentz"
    complete = sorted(glob.glob(str(cache / "clis-*" / ".complete")), reverse=True)
    return str(Path(complete[0]).parent) if complete else None


def cli_dir_for(backend: str, environ: Mapping[str, str]) -> str | None:
    """The AGENTZ_CLI_DIR the demo's ``backend`` needs: None when the CLI is on PATH (or AGENTZ_CLI_DIR
    is set), else the folder left by ``scripts/install-agent-clis.sh``; LookupError when it is nowhere."""
    if environ.get("AGENTZ_CLI_DIR") or shutil.which(backend, path=environ.get("PATH")) is not None:
        return None
    cache = Path(environ.get("XDG_CACHE_HOME") or Path(environ.get("HOME") or Path.home()) / ".cache") / "agentz"
    complete = sorted(glob.glob(str(cache / "clis-*" / ".complete")), reverse=True)
    if not complete:
        raise LookupError(f"the {backend} CLI is not on PATH")
    return str(Path(complete[0]).parent)
