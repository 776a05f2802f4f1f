"""The cost cap is checked before every agent call, the first included; what calls cost is shown on GitHub."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_pipeline import APPROVE, PLAN, Harness
from workers.runners.registry import get_runner


def scripted_runners_priced_as_claude(h: Harness) -> None:
    """Agents answer from the script while the cost guard prices every role as the claude backend."""
    h.deps.runner_for = lambda role: get_runner("scripted", h.settings)


async def test_the_first_call_is_refused_when_its_estimate_alone_exceeds_the_cap(tmp_path: Path) -> None:
    h = Harness(tmp_path, [{"role": "task_lead", "json": PLAN, "cost_usd": 0.01}], max_cost_per_run_usd=0.01,
                task_lead_backend="claude")
    scripted_runners_priced_as_claude(h)
    run_id = h.enqueue()
    run = await h.plan()
    assert run.status == "needs_human"
    assert "cost limit: $0.00 spent, the next task_lead call may cost $0.1" in (run.error or "")
    assert [e for e in h.queue.reads.events(run_id) if e.kind == "agent_call"] == []
    assert "agent-z:needs-human" in h.gh.labels[7]
    [comment] = h.gh.comments.values()
    assert "MAX_COST_PER_RUN_USD is $0.01" in comment["body"]


async def test_the_default_cap_lets_a_cheap_run_through_and_the_review_check_shows_each_calls_cost(
        tmp_path: Path) -> None:
    h = Harness(tmp_path, [
        {"role": "task_lead", "json": PLAN, "cost_usd": 0.03, "tokens": 1200},
        {"role": "developer", "write": [{"path": "src/app.py", "content": "print('fast')\n"}], "cost_usd": 0.2,
         "tokens": 9000},
        {"role": "reviewer", "json": APPROVE, "cost_usd": 0.05, "tokens": 2000},
    ], task_lead_backend="claude")
    scripted_runners_priced_as_claude(h)
    assert h.settings.max_cost_per_run_usd == 10.0
    h.enqueue()
    await h.plan()
    run = await h.work()
    assert run.status == "waiting_checks"
    assert run.cost_usd == pytest.approx(0.28)
    review = next(c for c in h.gh.checks.values() if c["name"] == "Agent-Z / review")
    summary = review["output"]["summary"]
    assert "**Cost**: $0.28 of the $10.00 cap, 12,200 tokens, 3 agent calls" in summary
    assert "| developer | $0.2000 | 9,000 |" in summary
    [comment] = h.gh.comments.values()
    assert "cost $0.28 (12,200 tokens)" in comment["body"]
