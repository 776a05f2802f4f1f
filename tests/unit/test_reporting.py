"""Check runs and the status comment are rendered within GitHub's limits, deterministically."""

from __future__ import annotations

import pytest

from agentz_app.domain.plans import Finding, Review
from agentz_app.reporting.checks import (
    ANNOTATIONS_PER_REQUEST,
    MAX_SUMMARY,
    TRUNCATION_MARKER,
    check_name,
    check_run_payload,
    chunks,
    external_id,
    finding_annotations,
    is_own_check,
    review_check,
    truncate,
)
from agentz_app.reporting.comments import (
    StatusView,
    commit_message,
    marker_run_id,
    pr_body,
    render_status_comment,
    status_marker,
)


def test_long_summaries_are_truncated_with_a_marker() -> None:
    payload = check_run_payload("r1", "plan", head_sha="a" * 40, status="completed", conclusion="success",
                                title="t", summary="x" * 100_000)
    summary = payload["output"]["summary"]
    assert len(summary.encode()) == MAX_SUMMARY
    assert summary.endswith(TRUNCATION_MARKER)
    assert truncate("short") == "short"


def test_multibyte_summaries_are_cut_to_github_byte_limit_marker_included() -> None:
    payload = check_run_payload("r1", "plan", head_sha="a" * 40, status="completed", conclusion="success",
                                title="t", summary="é" * 70_000, text="€" * 70_000)
    for key in ("summary", "text"):
        value = payload["output"][key]
        assert len(value.encode("utf-8")) <= MAX_SUMMARY
        assert value.endswith(TRUNCATION_MARKER)
        assert len(value.encode("utf-8")) > MAX_SUMMARY - 4  # cut at a character boundary, not far below
    assert truncate("€" * 20, 5 + len(TRUNCATION_MARKER.encode())) == "€" + TRUNCATION_MARKER


def test_check_runs_carry_name_external_id_and_actions() -> None:
    payload = check_run_payload("r1", "review", head_sha="b" * 40, status="in_progress", title="t", summary="s")
    assert payload["name"] == "Agent-Z / review"
    assert payload["external_id"] == external_id("r1", "review") == "agent-z:r1:review"
    assert [a["identifier"] for a in payload["actions"]] == ["retry", "stop"]
    assert all(len(a["label"]) <= 20 and len(a["description"]) <= 40 for a in payload["actions"])
    assert "conclusion" not in payload


def test_completed_check_needs_a_conclusion() -> None:
    with pytest.raises(ValueError, match="conclusion is required exactly when the check is completed"):
        check_run_payload("r1", "plan", head_sha="c", status="completed", title="t", summary="s")
    with pytest.raises(ValueError, match="unknown stage 'deploy'"):
        check_name("deploy")


def test_findings_become_annotations_in_chunks_of_fifty() -> None:
    findings = [Finding(file=f"f{i}.py", line=i + 1, severity="major", message="m", blocking=i % 2 == 0)
                for i in range(120)]
    notes = finding_annotations(findings)
    batches = list(chunks(notes))
    assert [len(batch) for batch in batches] == [50, 50, 20]
    assert all(len(batch) <= ANNOTATIONS_PER_REQUEST for batch in batches)
    assert notes[0] == {"path": "f0.py", "start_line": 1, "end_line": 1, "annotation_level": "warning",
                        "title": "major (blocking)", "message": "m"}


def test_only_agent_z_checks_are_our_own() -> None:
    assert is_own_check("Agent-Z / plan")
    assert not is_own_check("tests")
    assert not is_own_check("Agent-Zebra")


def test_review_with_blocking_findings_asks_for_action() -> None:
    review = Review(verdict="request_changes", summary="not LGTM", findings=[
        Finding(file="a.py", line=2, severity="critical", message="crash", blocking=True)])
    conclusion, title, summary = review_check(review, rounds=1)
    assert conclusion == "action_required"
    assert title == "1 blocking finding"
    assert "crash" in summary


def test_review_check_also_lists_the_changed_files() -> None:
    review = Review(verdict="approve", summary="LGTM", findings=[])
    conclusion, title, summary = review_check(review, rounds=2, changed_files=["src/a.py", "README.md"])
    assert conclusion == "success"
    assert title == "Approved by the Reviewer"
    assert "Rounds: 2" in summary
    assert "**Changed files** (2)" in summary
    assert "- `src/a.py`" in summary
    failed = review_check(None, rounds=1, changed_files=[], error="no JSON")
    assert failed[0] == "failure"
    assert "no JSON" in failed[2]
    assert "(no files changed)" in failed[2]


def test_status_comment_has_a_findable_marker_and_is_deterministic() -> None:
    view = StatusView(run_id="run42", status="waiting_checks", repo="o/r", issue_number=3, pr_number=9,
                      branch="agent-z/issue-3-x", plan_markdown="do it")
    body = render_status_comment(view)
    assert body.startswith(status_marker("run42"))
    assert marker_run_id(body) == "run42"
    assert "#9" in body
    assert render_status_comment(view) == body
    assert marker_run_id("no marker here") is None


def test_pr_body_closes_the_issue_and_commit_names_it() -> None:
    assert pr_body(5, "plan", "looks good", "r1").startswith("Closes #5")
    assert commit_message(5, "Crash  on\nstart", "Fix it").startswith("Fix #5: Crash on start\n\nFix it")
