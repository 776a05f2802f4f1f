"""Cost estimates before a call, and how a run's cost is shown."""

from __future__ import annotations

import pytest

from agentz_app.domain.plans import Review
from agentz_app.reporting.checks import review_check
from agentz_app.reporting.comments import StatusView, render_status_comment
from agentz_app.reporting.costs import call_costs, cost_markdown
from agentz_app.run_views import render_inspect
from agentz_app.store.models import Event, Run
from workers.runners.prices import CONSERVATIVE, FREE, configured_model, estimate_call_cost, price_for


def test_the_scripted_backend_costs_nothing() -> None:
    assert price_for("scripted", None) == FREE
    assert estimate_call_cost("scripted", None, 1_000_000) == 0.0


def test_a_backend_without_a_model_is_priced_as_its_clis_default_family() -> None:
    assert price_for("claude", None) == price_for("claude", "claude-sonnet-4-5")
    assert price_for("codex", None) == price_for("codex", "gpt-5")


def test_an_unknown_model_or_backend_is_priced_conservatively() -> None:
    assert price_for("opencode", None) == CONSERVATIVE
    assert price_for("claude", "someone/unheard-of-model") == CONSERVATIVE
    assert price_for("claude", "claude-opus-4-1") == CONSERVATIVE


def test_the_estimate_grows_with_the_prompt_and_includes_an_answer_even_for_an_empty_prompt() -> None:
    empty = estimate_call_cost("claude", "sonnet", 0)
    assert empty > 0
    assert estimate_call_cost("claude", "sonnet", 300_000) == pytest.approx(empty + 100_000 * 3.0 / 1_000_000)


def test_the_configured_model_follows_the_runners_precedence() -> None:
    variables = {"AGENTZ_MODEL": "gpt-5-mini", "AGENTZ_CLAUDE_MODEL": "claude-haiku-4-5"}
    assert configured_model("claude", variables) == "claude-haiku-4-5"
    assert configured_model("codex", variables) == "gpt-5-mini"
    assert configured_model("codex", {}) is None


def calls() -> list[Event]:
    return [
        Event(run_id="r1", kind="agent_call", payload={"role": "task_lead", "cost_usd": 0.02, "tokens": 1500,
                                                       "duration": 3.2}),
        Event(run_id="r1", kind="transition", payload={}),
        Event(run_id="r1", kind="agent_call", payload={"role": "developer", "cost_usd": 0.4, "tokens": 30000,
                                                       "duration": 61.0}),
        Event(run_id="r1", kind="agent_call", payload={"role": "reviewer", "cost_usd": "junk", "tokens": -5}),
    ]


def test_costs_per_call_come_from_agent_call_events_and_junk_counts_as_zero() -> None:
    found = call_costs(calls())
    assert [(c.role, c.cost_usd, c.tokens) for c in found] == [
        ("task_lead", 0.02, 1500), ("developer", 0.4, 30000), ("reviewer", 0.0, 0)]
    table = cost_markdown(found, limit_usd=10)
    assert table.startswith("**Cost**: $0.42 of the $10.00 cap, 31,500 tokens, 3 agent calls")
    assert "| developer | $0.4000 | 30,000 |" in table


def test_the_status_comment_shows_the_runs_cost_and_tokens() -> None:
    body = render_status_comment(StatusView("r1", "developing", "o/r", 1, cost_usd=0.42, tokens=31500))
    assert "cost $0.42 (31,500 tokens)" in body


def test_the_status_comment_shows_a_cost_overrun_reason() -> None:
    reason = "cost limit: $9.80 spent, the next developer call may cost $0.40 (MAX_COST_PER_RUN_USD is $10.00)"
    body = render_status_comment(StatusView("r1", "needs_human", "o/r", 1, cost_usd=9.8, error=reason))
    assert "Needs a human" in body
    assert reason in body


def test_the_review_check_summary_lists_what_each_call_cost() -> None:
    review = Review.model_validate({"verdict": "approve", "summary": "LGTM", "findings": []})
    _, _, summary = review_check(review, rounds=1, changed_files=["a.py"],
                                 cost_md=cost_markdown(call_costs(calls()), limit_usd=10))
    assert "**Cost**: $0.42 of the $10.00 cap" in summary
    assert "| task_lead | $0.0200 | 1,500 |" in summary


def test_runs_inspect_lists_each_agent_call_with_its_cost_and_tokens() -> None:
    run = Run(id="r1", repo="o/r", issue_number=1, status="developing", created_at=0.0, cost_usd=0.42,
              tokens=31500, attempt=1, infra_attempts=0, mode="full")
    text = render_inspect(run, calls(), [], 10.0)
    assert "cost: $0.42  tokens: 31500" in text
    lines = text.splitlines()
    start = lines.index("agent calls:")
    assert lines[start + 1].split() == ["task_lead", "$0.0200", "1,500", "tokens", "3.2s"]
    assert lines[start + 2].split() == ["developer", "$0.4000", "30,000", "tokens", "61.0s"]
