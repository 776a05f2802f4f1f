"""The demo names a failed CI run's check, step and telling line instead of timing out silently."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentz_app.demo.model import cli_dir_for
from agentz_app.demo.report import ci_failure


def _check(summary: str, name: str = "ci") -> dict[str, object]:
    return {"name": name, "conclusion": "failure", "output": {"title": "CI failure", "summary": summary}}


@pytest.mark.parametrize(("summary", "expected"), [
    ("`/venv/bin/python -m pytest -q` exited with 1.\n\n```\n/venv/bin/python: No module named pytest\n```\n",
     "ci: `/venv/bin/python -m pytest -q` exited with 1: /venv/bin/python: No module named pytest"),
    ("`python -m unittest -v` exited with 1.\n\n```\ntest_add ... FAIL\n\nFAIL: test_add (test_calc.CalcTest)\n"
     "AssertionError: -1 != 5\n\nFAILED (failures=1)\n```\n",
     "ci: `python -m unittest -v` exited with 1: FAIL: test_add (test_calc.CalcTest)"),
    ("`make check` exited with 2.\n\n```\nbuilding\nmake: *** [check] Error 2\n```\n",
     "ci: `make check` exited with 2: make: *** [check] Error 2"),
    ("`true` exited with 3.\n\n```\n\n```\n", "ci: `true` exited with 3"),
])
def test_a_failed_ci_run_is_named_with_its_step_and_telling_line(summary: str, expected: str) -> None:
    assert ci_failure(_check(summary)) == expected


def test_a_timed_out_ci_run_without_a_command_falls_back_to_its_title() -> None:
    check = {"name": "build", "conclusion": "timed_out", "output": {"title": "CI timed_out", "summary": ""}}
    assert ci_failure(check) == "build: CI timed_out"


def test_the_demo_finds_a_real_cli_on_path_before_the_install_scripts_folder(tmp_path: Path) -> None:
    bin_dir, cache = tmp_path / "bin", tmp_path / "cache"
    bin_dir.mkdir()
    (cache / "agentz" / "clis-x").mkdir(parents=True)
    (cache / "agentz" / "clis-x" / ".complete").touch()
    claude = bin_dir / "claude"
    claude.write_text("#!/bin/sh\n")
    claude.chmod(0o755)
    environ = {"PATH": f"{bin_dir}:/usr/bin", "XDG_CACHE_HOME": str(cache)}
    assert cli_dir_for("claude", environ) is None
    assert cli_dir_for("codex", environ) == str(cache / "agentz" / "clis-x")
    assert cli_dir_for("codex", {**environ, "AGENTZ_CLI_DIR": "/opt/clis"}) is None
    with pytest.raises(LookupError, match="codex CLI is not on PATH"):
        cli_dir_for("codex", {"PATH": str(bin_dir), "XDG_CACHE_HOME": str(tmp_path / "empty")})
