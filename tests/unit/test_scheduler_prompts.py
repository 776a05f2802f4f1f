"""Bounded Scheduler Agent prompts, the issue content fingerprint and per-repository debouncing (pure)."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest

from agentz_app.domain.debounce import Debounce
from agentz_app.domain.dependencies import IssueRef
from agentz_app.domain.fingerprint import issue_fingerprint
from agentz_app.domain.gates import IssueView
from agentz_app.scheduling.agent import build_prompt, plan_batches

REPO = "acme/app"


def issue(number: int, *, body: str = "Fix the parser.", **fields: Any) -> IssueView:
    return replace(IssueView(REPO, number, title=f"Issue {number}", body=body, author="octocat"), **fields)


def numbers_in(prompt: str) -> list[int]:
    return [int(n) for n in re.findall(r"^### #(\d+):", prompt, re.MULTILINE)]


def test_batches_hold_at_most_the_configured_number_of_candidates() -> None:
    batches = plan_batches(REPO, [issue(n) for n in range(1, 61)], max_candidates=25, max_chars=1_000_000)
    assert [len(batch.candidates) for batch in batches] == [25, 25, 10]
    assert [numbers_in(batch.prompt) for batch in batches] == [
        list(range(1, 26)), list(range(26, 51)), list(range(51, 61)),
    ]


def test_batches_stay_under_the_character_limit() -> None:
    candidates = [issue(n, body="x" * 1400) for n in range(1, 101)]
    batches = plan_batches(REPO, candidates, max_candidates=25, max_chars=10_000)
    assert len(batches) > 4
    assert max(len(batch.prompt) for batch in batches) <= 10_000
    assert [n for batch in batches for n in numbers_in(batch.prompt)] == list(range(1, 101))


def test_one_candidate_prompt_is_the_same_as_the_unbounded_prompt() -> None:
    [batch] = plan_batches(REPO, [issue(1), issue(2)], max_candidates=25, max_chars=40_000)
    assert batch.prompt == build_prompt(REPO, [issue(1), issue(2)])


def test_an_over_long_issue_is_cut_to_fit_never_sent_whole() -> None:
    huge = issue(7, title="T" * 5_000, body="A" * 300_000 + "TAIL", labels=tuple(f"label-{n}" for n in range(500)))
    [batch] = plan_batches(REPO, [huge], max_candidates=25, max_chars=5_000)
    assert len(batch.prompt) <= 5_000
    assert "TAIL" not in batch.prompt
    assert "…[truncated]" in batch.prompt
    assert numbers_in(batch.prompt) == [7]


def test_a_long_issue_gets_its_own_prompt_and_the_others_are_not_cut() -> None:
    candidates = [issue(1, body="short"), issue(2, body="B" * 50_000), issue(3, body="short too")]
    batches = plan_batches(REPO, candidates, max_candidates=25, max_chars=5_000)
    assert all(len(batch.prompt) <= 5_000 for batch in batches)
    assert "short too" in batches[-1].prompt


def test_the_fingerprint_follows_content_not_activity() -> None:
    base = issue(1, labels=("bug",), comments=("hi",), updated_at="2026-01-01T00:00:00Z")
    deps = [IssueRef(REPO, 9)]
    same = issue_fingerprint(base, deps)
    assert issue_fingerprint(replace(base, updated_at="2026-05-05T00:00:00Z"), deps) == same
    assert issue_fingerprint(replace(base, labels=("BUG",)), deps) == same
    changes: list[dict[str, Any]] = [{"title": "Other"}, {"body": "Other"}, {"labels": ("bug", "ui")},
                                     {"comments": ("hi", "more")}]
    for change in changes:
        assert issue_fingerprint(replace(base, **change), deps) != same
    assert issue_fingerprint(base, [IssueRef(REPO, 10)]) != same


@pytest.mark.parametrize(
    ("since", "last", "at", "due"),
    [
        (0.0, 0.0, 1.9, False),  # still settling
        (0.0, 0.0, 2.0, True),  # quiet long enough
        (0.0, 9.5, 9.9, False),  # a steady stream, under the ceiling
        (0.0, 9.8, 10.0, True),  # a steady stream reaches the ceiling
    ],
)
def test_a_repository_is_due_after_quiet_or_at_the_ceiling(since: float, last: float, at: float, due: bool) -> None:
    assert Debounce(quiet=2.0, ceiling=10.0).due(since, last, at=at) is due


def test_a_busy_repository_does_not_hold_back_a_quiet_one() -> None:
    marks = {"acme/busy": {"since": 100.0, "last": 104.5}, "acme/quiet": {"since": 101.0, "last": 101.0}}
    assert Debounce(quiet=2.0, ceiling=10.0).due_repos(marks, at=104.6) == ["acme/quiet"]
