"""The demo names a failed CI run's check, step and telling line instead of timing out silently."""

from __future__ import annotations

import pytest

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
