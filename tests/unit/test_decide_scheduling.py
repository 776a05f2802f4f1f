"""Scheduling decisions, table-driven: wake-ups, gate results, assessments and reports."""

from __future__ import annotations

from typing import Any

import pytest

from agentz_app.domain import gates
from agentz_app.domain.debounce import Debounce
from agentz_app.domain.dependencies import IssueRef
from agentz_app.domain.gates import GateContext, IssueView, Verdict, evaluate_all
from agentz_app.domain.scheduling import (
    Assessment,
    CandidateReport,
    Ranking,
    Wake,
    Window,
    assessments_from,
    decide_wake,
    fresh_snapshot,
    plan_assessment,
    split_gate_results,
    unadmitted_report,
)

REPO = "acme/app"
DEBOUNCE = Debounce(quiet=5.0, ceiling=30.0)

WAKES: list[tuple[str, dict[str, dict[str, Any]], Window | None, bool, float, Wake]] = [
    # (case, dirty marks, "every repository" window, slot freed, now, expected)
    ("start-up waits for quiet", {}, (100.0, 100.0), False, 102.0, Wake(False, (), (100.0, 100.0))),
    ("start-up is due after quiet", {"b/b": {"since": 100.0, "last": 101.0}, "a/a": {"last": 104.0}},
     (100.0, 100.0), False, 105.0, Wake(True, ("a/a", "b/b"), None)),
    ("nothing marked, nothing freed: nothing due", {}, None, False, 500.0, Wake(False, (), None)),
    ("a quiet repository is due alone", {REPO: {"since": 90.0, "last": 94.0}, "o/busy": {"since": 98.0, "last": 99.0}},
     None, False, 100.0, Wake(False, (REPO,), None)),
    ("a stream of changes is due at the ceiling", {REPO: {"since": 70.0, "last": 99.5}}, None, False, 100.0,
     Wake(False, (REPO,), None)),
    ("a mark without since counts from its last change", {REPO: {"last": 99.0}}, None, False, 100.0,
     Wake(False, (), None)),
    ("a freed slot opens a window for every repository", {}, None, True, 100.0, Wake(False, (), (100.0, 100.0))),
    ("another freed slot extends the window", {}, (90.0, 96.0), True, 100.0, Wake(False, (), (90.0, 100.0))),
    ("the window is due at its ceiling despite freed slots", {REPO: {"since": 99.0, "last": 99.0}}, (60.0, 99.0),
     True, 100.0, Wake(True, (REPO,), None)),
]


@pytest.mark.parametrize(("case", "marks", "window", "freed", "at", "expected"), WAKES,
                         ids=[row[0] for row in WAKES])
def test_decide_wake(case: str, marks: dict[str, dict[str, Any]], window: Window | None, freed: bool, at: float,
                     expected: Wake) -> None:
    assert decide_wake(marks, window, slot_freed=freed, at=at, debounce=DEBOUNCE) == expected, case


FRESHNESS = [
    ("no resync record: webhook-fed snapshots count", None, None, 1000.0, True),
    ("last resync succeeded", 900.0, 100.0, 1000.0, True),
    ("failing, but the last success is recent", 900.0, 950.0, 1000.0, True),
    ("failing and the last success is too old", 100.0, 950.0, 1000.0, False),
    ("never succeeded and failing for long", None, 50.0, 1000.0, False),
]


@pytest.mark.parametrize(("case", "ok_at", "failed_at", "at", "expected"), FRESHNESS,
                         ids=[row[0] for row in FRESHNESS])
def test_fresh_snapshot(case: str, ok_at: float | None, failed_at: float | None, at: float, expected: bool) -> None:
    assert fresh_snapshot(ok_at, failed_at, at=at, interval=60.0) is expected, case


def issue(number: int, **values: Any) -> IssueView:
    values.setdefault("author_trusted", True)
    return IssueView(REPO, number, title=f"issue {number}", **values)


CTX = GateContext(
    live_runs={IssueRef(REPO, 2): "queued", IssueRef(REPO, 3): "developing"},
    last_runs={IssueRef(REPO, 4): "failed"},
    dependency_states={IssueRef(REPO, 50): "open"},
)

SPLITS = [
    # (case, issue, expected report or None for a candidate)
    ("an eligible issue is a candidate", issue(1), None),
    ("an issue with a queued run reports queued", issue(2),
     CandidateReport(REPO, 2, "issue 2", "queued", "a run is already queued", gate=gates.ACTIVE_RUN)),
    ("an issue whose run is past the queue reports ran", issue(3),
     CandidateReport(REPO, 3, "issue 3", "ran", "a run is already developing", gate=gates.ACTIVE_RUN)),
    ("a terminal run is not rescheduled", issue(4),
     CandidateReport(REPO, 4, "issue 4", "skipped:previous_run",
                     "the last run ended failed; comment /agent-z retry to run it again", gate=gates.PREVIOUS_RUN)),
    ("an outsider's issue is skipped", issue(5, author="mallory", author_trusted=False),
     CandidateReport(REPO, 5, "issue 5", "skipped:untrusted_author",
                     "opened by @mallory, who may not steer Agent-Z; a maintainer can add one of the labels agent-z",
                     gate=gates.UNTRUSTED_AUTHOR)),
    ("a dependency-blocked issue is skipped", issue(6, body="Depends on #50"),
     CandidateReport(REPO, 6, "issue 6", "skipped:dependency", "blocked by acme/app#50 (open)", gate=gates.DEPENDENCY)),
    ("a dependency of unknown state blocks too", issue(7, body="Blocked by #51"),
     CandidateReport(REPO, 7, "issue 7", "skipped:dependency", "blocked by acme/app#51 (state unknown)",
                     gate=gates.DEPENDENCY)),
    ("an assigned issue is skipped", issue(8, assignees=("bob",)),
     CandidateReport(REPO, 8, "issue 8", "skipped:assigned", "assigned to bob", gate=gates.ASSIGNED)),
]


@pytest.mark.parametrize(("case", "view", "expected"), SPLITS, ids=[row[0] for row in SPLITS])
def test_split_gate_results(case: str, view: IssueView, expected: CandidateReport | None) -> None:
    split = split_gate_results(evaluate_all([view], CTX), CTX.live_runs)
    if expected is None:
        assert (split.candidates, split.skipped) == ((view,), ()), case
    else:
        assert (split.candidates, split.skipped) == ((), (expected,)), case


def test_an_issue_listed_twice_is_reported_once_with_its_first_verdict() -> None:
    results = [(issue(1), Verdict(False, gates.ASSIGNED, "first")), (issue(1), Verdict(False, gates.DUPLICATE, "x"))]
    assert [report.reason for report in split_gate_results(results, {}).skipped] == ["first"]


def assessed(number: int, fingerprint: str, outcome: str = "ranked", score: int | None = 50,
             reason: str = "ok") -> Assessment:
    return Assessment(number, fingerprint, outcome, score, reason)


PLANS = [
    # (case, candidates, fingerprints, stored, open numbers, current, unassessed, forgotten)
    ("nothing stored: ask about every candidate, most recently active first",
     [issue(1, updated_at="2026-01-01"), issue(2, updated_at="2026-02-01")], {1: "a", 2: "b"}, {}, [1, 2],
     [], [2, 1], []),
    ("unchanged issues are not asked about again", [issue(1), issue(2)], {1: "a", 2: "b"},
     {1: assessed(1, "a"), 2: assessed(2, "b")}, [1, 2], [1, 2], [], []),
    ("a changed issue is asked about again", [issue(1), issue(2)], {1: "a", 2: "b2"},
     {1: assessed(1, "a"), 2: assessed(2, "b")}, [1, 2], [1], [2], []),
    ("rejections stay valid while unchanged", [issue(3)], {3: "c"},
     {3: assessed(3, "c", "rejected", None, "vague: ?")}, [3], [3], [], []),
    ("closed issues' assessments are forgotten", [issue(1)], {1: "a"},
     {1: assessed(1, "a"), 9: assessed(9, "z")}, [1], [1], [], [9]),
    ("a skipped open issue keeps its assessment", [], {}, {4: assessed(4, "d")}, [4], [], [], []),
    ("ties in activity go to the lower number first", [issue(5), issue(6)], {5: "e", 6: "f"}, {}, [5, 6],
     [], [5, 6], []),
]


@pytest.mark.parametrize(("case", "candidates", "fingerprints", "stored", "open_numbers", "current", "unassessed",
                          "forgotten"), PLANS, ids=[row[0] for row in PLANS])
def test_plan_assessment(case: str, candidates: list[IssueView], fingerprints: dict[int, str],
                         stored: dict[int, Assessment], open_numbers: list[int], current: list[int],
                         unassessed: list[int], forgotten: list[int]) -> None:
    plan = plan_assessment(candidates, fingerprints, stored, open_numbers)
    assert sorted(plan.current) == current, case
    assert [view.number for view in plan.unassessed] == unassessed, case
    assert list(plan.forgotten) == forgotten, case


def test_the_agents_answer_becomes_one_assessment_per_candidate() -> None:
    ranking = Ranking.model_validate({"ranking": [{"number": 1, "score": 70, "reason": "small"}],
                                      "rejected": [{"number": 2, "reason": "high_risk: auth"}]})
    assert assessments_from(ranking, {1: "a", 2: "b", 3: "c"}) == {
        1: Assessment(1, "a", "ranked", 70, "small"),
        2: Assessment(2, "b", "rejected", None, "high_risk: auth"),
        3: Assessment(3, "c", "unranked", None, "not ranked by the scheduler agent"),
    }


UNADMITTED = [
    ("rejected by the agent", assessed(1, "a", "rejected", None, "tracking: epic"), "",
     ("rejected:tracking", "tracking: epic")),
    ("not ranked by the agent", assessed(1, "a", "unranked", None, "not ranked by the scheduler agent"), "",
     ("unranked", "not ranked by the scheduler agent")),
    ("ranking failed before it was assessed", None, "agent timed out", ("unranked", "ranking failed: agent timed out")),
]


@pytest.mark.parametrize(("case", "stored", "failure", "expected"), UNADMITTED, ids=[row[0] for row in UNADMITTED])
def test_unadmitted_report(case: str, stored: Assessment | None, failure: str, expected: tuple[str, str]) -> None:
    report = unadmitted_report(issue(1), stored, failure=failure)
    assert (report.verdict, report.reason) == expected, case
