"""Admission decisions, table-driven: capacity, batch size, rank order and --force."""

from __future__ import annotations

import pytest

from agentz_app.domain.admission import (
    BATCH_FULL,
    NO_SLOT,
    Capacity,
    admission_order,
    admission_refusal,
    forced_numbers,
)
from agentz_app.domain.scheduling import Assessment

REPO = "acme/app"
OTHER = "acme/lib"

REFUSALS = [
    # (case, capacity, admitted this pass, batch size, expected refusal)
    ("empty host admits", Capacity(2, 2), 0, 5, None),
    ("over the global limit", Capacity(0, 2, {OTHER: 2}), 0, 5, NO_SLOT),
    ("global limit overrun by live runs counts as none free", Capacity(-1, 5, {OTHER: 3}), 0, 5, NO_SLOT),
    ("over the repository limit", Capacity(3, 1, {REPO: 1}), 0, 5, NO_SLOT),
    ("other repositories' runs do not use this one's limit", Capacity(3, 1, {OTHER: 1}), 0, 5, None),
    ("batch size reached", Capacity(5, 5), 2, 2, BATCH_FULL),
    ("batch size is checked before slots", Capacity(0, 0), 1, 1, BATCH_FULL),
    ("one slot left admits one more", Capacity(1, 3, {REPO: 2}), 1, 5, None),
]


@pytest.mark.parametrize(("case", "capacity", "admitted", "batch", "expected"), REFUSALS,
                         ids=[row[0] for row in REFUSALS])
def test_admission_refusal(case: str, capacity: Capacity, admitted: int, batch: int, expected: str | None) -> None:
    assert admission_refusal(capacity, REPO, admitted=admitted, batch_size=batch) == expected, case


CAPACITIES = [
    ("no live run", [], 3, 2, Capacity(3, 2, {})),
    ("live runs count globally and per repository", [REPO, REPO, OTHER], 4, 2, Capacity(1, 2, {REPO: 2, OTHER: 1})),
    ("more live runs than the limit leave a negative budget", [REPO, OTHER, OTHER], 2, 2,
     Capacity(-1, 2, {REPO: 1, OTHER: 2})),
]


@pytest.mark.parametrize(("case", "live", "max_parallel", "per_repo", "expected"), CAPACITIES,
                         ids=[row[0] for row in CAPACITIES])
def test_capacity_from_live_runs(case: str, live: list[str], max_parallel: int, per_repo: int,
                                 expected: Capacity) -> None:
    assert Capacity.from_live(live, max_parallel=max_parallel, per_repo_limit=per_repo) == expected, case


def test_taking_a_slot_uses_the_global_and_the_repository_budget() -> None:
    capacity = Capacity(2, 2, {REPO: 1}).taken(REPO)
    assert capacity == Capacity(1, 2, {REPO: 2})
    assert capacity.free_for(REPO) == 0
    assert capacity.free_for(OTHER) == 1


def test_a_repository_limit_applies_to_its_pass_only() -> None:
    host = Capacity(4, 3, {REPO: 1})
    assert host.limited_to(1).free_for(REPO) == 0
    assert host.free_for(REPO) == 2  # the host's capacity is unchanged


def ranked(number: int, score: int, reason: str = "ok") -> Assessment:
    return Assessment(number, f"f{number}", "ranked", score, reason)


def rejected(number: int, reason: str) -> Assessment:
    return Assessment(number, f"f{number}", "rejected", None, reason)


UNRANKED = Assessment(9, "f9", "unranked", None, "not ranked by the scheduler agent")
RISKY = rejected(4, "high_risk: touches auth")
VAGUE = rejected(5, "vague: what?")

ORDERS = [
    ("best score first", [ranked(1, 10), ranked(2, 90), ranked(3, 50)], False, [2, 3, 1]),
    ("ties go to the lower number", [ranked(7, 50), ranked(3, 50)], False, [3, 7]),
    ("rejected and unranked issues are never admitted", [ranked(1, 10), RISKY, VAGUE, UNRANKED], False, [1]),
    ("force admits high-risk rejections after the ranked ones", [RISKY, ranked(1, 0), VAGUE], True, [1, 4]),
    ("force never admits other rejections", [VAGUE, UNRANKED], True, []),
    ("nothing assessed admits nothing", [], True, []),
]


@pytest.mark.parametrize(("case", "items", "force", "expected"), ORDERS, ids=[row[0] for row in ORDERS])
def test_admission_order(case: str, items: list[Assessment], force: bool, expected: list[int]) -> None:
    assert [item.number for item in admission_order(items, force=force)] == expected, case


def test_forced_admission_is_marked_with_score_zero_and_the_agents_reason() -> None:
    (item,) = admission_order([RISKY], force=True)
    assert (item.outcome, item.score, item.reason) == ("ranked", 0, "admitted by --force (high_risk: touches auth)")


@pytest.mark.parametrize(("force", "expected"), [(True, {4}), (False, set())])
def test_only_high_risk_rejections_become_forced_runs(force: bool, expected: set[int]) -> None:
    assert forced_numbers([RISKY, VAGUE, ranked(1, 80), UNRANKED], force=force) == expected
