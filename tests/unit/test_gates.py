"""Deterministic scheduling gates, table-driven."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from agentz_app.domain import gates
from agentz_app.domain.dependencies import IssueRef
from agentz_app.domain.gates import GateContext, IssueView, PullView, evaluate, evaluate_all

REPO = "acme/app"
BASE = IssueView(REPO, 5, title="Add a flag", body="Please add --verbose.", updated_at="2026-01-01T00:00:00Z",
                 author="alice", author_trusted=True)
OUTSIDER = replace(BASE, author="mallory", author_trusted=False)
DEP = IssueRef(REPO, 2)
CTX = GateContext(eligible_labels=(), block_labels=("blocked",), skip_labels=("ongoing",), trigger_label="agent-z")


def with_ctx(**values: Any) -> GateContext:
    return replace(CTX, **values)


@pytest.mark.parametrize(
    ("issue", "ctx", "gate"),
    [
        (BASE, CTX, gates.PASSED),
        (replace(BASE, is_pull_request=True), CTX, gates.PULL_REQUEST),
        (replace(BASE, state="closed"), CTX, gates.CLOSED),
        (replace(BASE, assignees=("alice",)), CTX, gates.ASSIGNED),
        (replace(BASE, labels=("Blocked",)), CTX, gates.BLOCK_LABEL),
        (replace(BASE, labels=("ongoing",)), CTX, gates.SKIP_LABEL),
        (BASE, with_ctx(eligible_labels=("ready",)), gates.NOT_ELIGIBLE),
        (replace(BASE, labels=("ready",)), with_ctx(eligible_labels=("ready",)), gates.PASSED),
        (replace(BASE, labels=("agent-z",)), with_ctx(eligible_labels=("ready",)), gates.PASSED),
        (BASE, with_ctx(open_pulls=(PullView(REPO, 9, linked_issues=(5,)),)), gates.OPEN_PR),
        (BASE, with_ctx(open_pulls=(PullView(REPO, 9, body="Fixes #5"),)), gates.OPEN_PR),
        (BASE, with_ctx(open_pulls=(PullView(REPO, 9, body="Closes acme/app#5"),)), gates.OPEN_PR),
        (BASE, with_ctx(open_pulls=(PullView(REPO, 9, body="resolves https://github.com/acme/app/issues/5"),)),
         gates.OPEN_PR),
        # A plain mention does not keep the issue out: anyone can open a PR that names it.
        (BASE, with_ctx(open_pulls=(PullView(REPO, 9, body="Part of acme/app#5"),)), gates.PASSED),
        (BASE, with_ctx(open_pulls=(PullView(REPO, 9, title="Fixes #5", body="see #5"),)), gates.PASSED),
        (BASE, with_ctx(open_pulls=(PullView(REPO, 9, body="```\nFixes #5\n```"),)), gates.PASSED),
        (BASE, with_ctx(open_pulls=(PullView(REPO, 9, body="Fixes other/lib#5"),)), gates.PASSED),
        (BASE, with_ctx(open_pulls=(PullView(REPO, 9, body="Fixes #5", state="closed"),)), gates.PASSED),
        (BASE, with_ctx(open_pulls=(PullView(REPO, 9, body="Fixes #50"),)), gates.PASSED),
        (BASE, with_ctx(open_pulls=(PullView("other/lib", 9, body="Fixes #5"),)), gates.PASSED),
        (BASE, with_ctx(live_runs={IssueRef(REPO, 5): "queued"}), gates.ACTIVE_RUN),
        (BASE, with_ctx(live_runs={IssueRef(REPO, 5): "developing"}), gates.ACTIVE_RUN),
        (BASE, with_ctx(live_runs={IssueRef(REPO, 6): "developing"}), gates.PASSED),
        (BASE, with_ctx(last_runs={IssueRef(REPO, 5): "cancelled"}), gates.PREVIOUS_RUN),
        (BASE, with_ctx(last_runs={IssueRef(REPO, 5): "needs_human"}), gates.PREVIOUS_RUN),
        (BASE, with_ctx(last_runs={IssueRef(REPO, 5): "done"}), gates.PREVIOUS_RUN),
        (BASE, with_ctx(last_runs={IssueRef(REPO, 6): "failed"}), gates.PASSED),
        (replace(BASE, state_reason="duplicate"), CTX, gates.DUPLICATE),
        (replace(BASE, labels=("duplicate",)), CTX, gates.DUPLICATE),
        (replace(BASE, body="Blocked by #2"), CTX, gates.DEPENDENCY),
        (replace(BASE, body="Blocked by #2"), with_ctx(dependency_states={DEP: "open"}), gates.DEPENDENCY),
        (replace(BASE, body="Blocked by #2"), with_ctx(dependency_states={DEP: "closed"}), gates.PASSED),
        (replace(BASE, comments=("Depends on other/lib#1",)), CTX, gates.DEPENDENCY),
        (BASE, with_ctx(snapshot_fresh=False), gates.STALE),
    ],
)
def test_gate_verdicts(issue: IssueView, ctx: GateContext, gate: str) -> None:
    verdict = evaluate(issue, ctx)
    assert verdict.gate == gate
    assert verdict.passed is (gate == gates.PASSED)
    assert verdict.reason


def test_explicit_trigger_overrides_eligibility_only() -> None:
    ctx = with_ctx(eligible_labels=("ready",))
    assert evaluate(BASE, ctx, explicit=True).passed
    assert evaluate(replace(BASE, labels=("blocked",)), ctx, explicit=True).gate == gates.BLOCK_LABEL


def test_the_same_issue_twice_in_the_input_is_a_duplicate() -> None:
    results = evaluate_all([BASE, replace(BASE, title="again"), replace(BASE, number=6)], CTX)
    assert [verdict.gate for _, verdict in results] == [gates.PASSED, gates.DUPLICATE, gates.PASSED]


def test_failed_verdict_label_names_the_gate() -> None:
    assert evaluate(replace(BASE, state="closed"), CTX).label == "skipped:closed"


def test_reasons_explain_the_decision() -> None:
    assert "alice" in evaluate(replace(BASE, assignees=("alice",)), CTX).reason
    assert "#9" in evaluate(BASE, with_ctx(open_pulls=(PullView(REPO, 9, body="Fixes #5"),))).reason


@pytest.mark.parametrize(
    ("issue", "ctx", "gate"),
    [
        (OUTSIDER, CTX, gates.UNTRUSTED_AUTHOR),
        (OUTSIDER, with_ctx(trusted_only=False), gates.PASSED),
        # A label counts only when someone who may steer added it, and only while it is on the issue.
        (replace(OUTSIDER, labels=("agent-z",)), CTX, gates.UNTRUSTED_AUTHOR),
        (replace(OUTSIDER, labels=("agent-z",), trusted_labels=("agent-z",)), CTX, gates.PASSED),
        (replace(OUTSIDER, trusted_labels=("agent-z",)), CTX, gates.UNTRUSTED_AUTHOR),
        (replace(OUTSIDER, labels=("Ready",), trusted_labels=("ready",)), with_ctx(eligible_labels=("ready",)),
         gates.PASSED),
        # A label that is neither eligible nor the trigger vouches for nothing.
        (replace(OUTSIDER, labels=("bug",), trusted_labels=("bug",)), CTX, gates.UNTRUSTED_AUTHOR),
        # Cheaper gates still come first.
        (replace(OUTSIDER, assignees=("bob",)), CTX, gates.ASSIGNED),
    ],
)
def test_trust_gate(issue: IssueView, ctx: GateContext, gate: str) -> None:
    assert evaluate(issue, ctx).gate == gate


def test_a_maintainers_explicit_request_needs_no_trusted_author() -> None:
    assert evaluate(OUTSIDER, CTX, explicit=True).passed


def test_untrusted_author_reason_names_the_author_and_the_way_out() -> None:
    verdict = evaluate(replace(OUTSIDER, labels=("ready",)), with_ctx(eligible_labels=("ready",)))
    assert verdict.label == "skipped:untrusted_author"
    assert "@mallory" in verdict.reason
    assert "ready" in verdict.reason
    assert "agent-z" in verdict.reason


def test_trust_follows_scheduler_trust_setting(settings: Any) -> None:
    assert GateContext.from_settings(settings).trusted_only is True
    anyone = settings.model_copy(update={"scheduler_trust": "anyone"})
    assert GateContext.from_settings(anyone).trusted_only is False
