"""Plans and reviews are validated JSON; one repair prompt, then the stage fails with the raw text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentz_app.config import Settings
from agentz_app.domain.plans import Finding, Plan, Review
from agentz_app.errors import InvalidAgentOutput
from workers.roles.parse import extract_json, parse_output, run_structured
from workers.roles.prompts import AuthoredText, IssueContext, feedback_prompt, plan_prompt, review_prompt
from workers.runners.scripted import ScriptedRunner

PLAN = {"summary": "Add a flag", "steps": ["edit cli"], "files": ["src/cli.py"], "modules": ["cli"], "risk": "low"}


def test_plan_is_read_from_a_fenced_block_after_prose() -> None:
    text = "Here is my plan.\n```json\n" + json.dumps(PLAN) + "\n```\nDone."
    plan = parse_output(Plan, text)
    assert plan.files == ["src/cli.py"]
    assert plan.risk == "low"


def test_plan_is_read_from_a_bare_object_inside_prose() -> None:
    text = "Plan: " + json.dumps(PLAN) + " (with {braces} in prose)"
    assert parse_output(Plan, text).summary == "Add a flag"


@pytest.mark.parametrize(
    "bad",
    [
        "LGTM, ship it",
        json.dumps({**PLAN, "risk": "extreme"}),
        json.dumps({**PLAN, "steps": []}),
        json.dumps({**PLAN, "files": ["../../etc/passwd"]}),
        json.dumps({**PLAN, "files": ["/abs/path"]}),
    ],
)
def test_invalid_plans_are_rejected_with_the_raw_text(bad: str) -> None:
    with pytest.raises(InvalidAgentOutput) as caught:
        parse_output(Plan, bad)
    assert caught.value.raw == bad


def test_not_lgtm_prose_with_request_changes_is_not_an_approval() -> None:
    text = "This is not LGTM. Approve? No.\n```json\n" + json.dumps(
        {"verdict": "request_changes", "summary": "not LGTM", "findings": [
            {"file": "a.py", "line": 3, "severity": "major", "message": "bug", "blocking": True}]}
    ) + "\n```"
    review = parse_output(Review, text)
    assert not review.approved
    assert [f.file for f in review.blocking_findings] == ["a.py"]


def test_approve_verdict_with_a_blocking_finding_is_not_an_approval() -> None:
    review = Review(verdict="approve", summary="ok", findings=[
        Finding(file="a.py", severity="critical", message="x", blocking=True)])
    assert not review.approved


def test_prose_verdicts_never_count() -> None:
    with pytest.raises(InvalidAgentOutput):
        parse_output(Review, "verdict: approve. LGTM!")


def test_extract_json_skips_braces_inside_strings() -> None:
    assert extract_json('x {"a": "}{", "b": 1} y') == {"a": "}{", "b": 1}


def test_prompts_carry_issue_plan_and_feedback() -> None:
    issue = IssueContext(repo="o/r", number=7, title="Crash", body="It crashes",
                         comments=[AuthoredText("me too", author="bob", association="NONE")], default_branch="trunk")
    plan = Plan.model_validate(PLAN)
    assert "Issue #7:" in plan_prompt(issue)
    assert "Title: Crash" in plan_prompt(issue)
    assert "trunk" in plan_prompt(issue)
    assert "me too" in plan_prompt(issue)
    review = review_prompt(issue, plan, changed_files=["src/cli.py"], diff="+x", round_=2)
    assert "round 2" in review
    assert "src/cli.py" in review
    assert "+x" in review
    fix = feedback_prompt({"kind": "review", "review_body": "Please rename", "comments": [
        {"author": "alice", "path": "src/cli.py", "line": 4, "body": "inline note"}]})
    assert "Please rename" in fix
    assert "src/cli.py:4" in fix
    assert "inline note" in fix
    ci = feedback_prompt({"kind": "ci", "checks": [{"name": "tests", "conclusion": "failure", "summary": "1 failed"}]})
    assert "tests: failure" in ci
    assert "1 failed" in ci


def _steps(*steps: dict[str, object]) -> dict[str, str]:
    return {"AGENTZ_SCRIPTED_STEPS": json.dumps(list(steps))}


async def test_invalid_then_repaired_output_is_accepted_in_the_same_session(settings: Settings, tmp_path: Path) -> None:
    env = _steps(
        {"role": "task_lead", "call": 1, "text": "I think we should just do it."},
        {"role": "task_lead", "call": 2, "json": PLAN},
    )
    plan, results, _raw, error = await run_structured(
        ScriptedRunner(settings), Plan, role="task_lead", prompt="plan it", workdir=tmp_path, timeout=30, env=env)
    assert error is None
    assert plan is not None
    assert plan.summary == "Add a flag"
    assert len(results) == 2
    assert results[0].session_id == results[1].session_id


async def test_invalid_twice_fails_and_keeps_the_raw_text(settings: Settings, tmp_path: Path) -> None:
    env = _steps({"role": "reviewer", "text": "not LGTM, but no JSON either"})
    review, results, raw, error = await run_structured(
        ScriptedRunner(settings), Review, role="reviewer", prompt="review", workdir=tmp_path, timeout=30, env=env)
    assert review is None
    assert len(results) == 2
    assert raw == "not LGTM, but no JSON either"
    assert error is not None
    assert "Review" in error


async def test_a_failing_agent_is_not_asked_to_repair(settings: Settings, tmp_path: Path) -> None:
    env = _steps({"role": "task_lead", "fail": {"exit_code": 3, "error": "model overloaded"}})
    plan, results, _, error = await run_structured(
        ScriptedRunner(settings), Plan, role="task_lead", prompt="plan", workdir=tmp_path, timeout=30, env=env)
    assert plan is None
    assert len(results) == 1
    assert error == "model overloaded"
