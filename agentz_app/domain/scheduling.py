"""Scheduling decisions over plain data (pure).

The scheduler's shell reads a snapshot, then asks these functions: when a repository
is due (:func:`decide_wake`), which gate results are candidates and which are skipped
with a stored verdict (:func:`split_gate_results`), which candidates need the
Scheduler Agent because their content changed (:func:`plan_assessment`), how the
agent's answer becomes stored assessments (:func:`assessments_from`), and what every
candidate that was not enqueued reports (:func:`unadmitted_report`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import BaseModel, Field, field_validator

from agentz_app.domain import gates
from agentz_app.domain.debounce import Debounce
from agentz_app.domain.gates import IssueView, Verdict
from agentz_app.domain.states import Status

REJECTION_KINDS = ("tracking", "vague", "low_value", "high_risk")
STALE_AFTER_INTERVALS = 2.0


# The Scheduler Agent's answer -----------------------------------------------------


class RankedIssue(BaseModel):
    number: int
    score: int = Field(ge=0, le=100)
    reason: str = ""


class RejectedIssue(BaseModel):
    number: int
    reason: str

    @field_validator("reason")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        kind = value.split(":", 1)[0].strip().lower()
        if kind not in REJECTION_KINDS:
            raise ValueError(f"reason must start with one of {', '.join(REJECTION_KINDS)} followed by ':'")
        return value.strip()

    @property
    def kind(self) -> str:
        return self.reason.split(":", 1)[0].strip().lower()


class Ranking(BaseModel):
    ranking: list[RankedIssue]
    rejected: list[RejectedIssue] = Field(default_factory=list)

    def ordered(self) -> list[RankedIssue]:
        """Ranked issues, best score first (ties keep the agent's order)."""
        return sorted(self.ranking, key=lambda item: -item.score)


# Plain records --------------------------------------------------------------------


@dataclass(frozen=True)
class CandidateReport:
    """One issue's outcome in a scheduling pass (what ``schedule-once`` prints)."""

    repo: str
    number: int
    title: str
    verdict: str
    reason: str
    gate: str | None = None
    rank: int | None = None
    score: int | None = None
    run_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Assessment:
    """The Scheduler Agent's word on one issue, valid for the issue content with ``fingerprint``.

    ``outcome`` is ``ranked`` (with a score), ``rejected`` (the reason starts with its kind)
    or ``unranked`` (the agent said nothing about it).
    """

    number: int
    fingerprint: str
    outcome: str
    score: int | None = None
    reason: str = ""

    @property
    def kind(self) -> str:
        """The rejection kind (tracking, vague, low_value, high_risk)."""
        return self.reason.split(":", 1)[0].strip().lower()


# When to schedule -----------------------------------------------------------------

Window = tuple[float, float]  # (first, last) unscheduled wake-up for "every repository"


@dataclass(frozen=True)
class Wake:
    """What the scheduler does on one tick: every repository, some, or nothing."""

    whole: bool
    repos: tuple[str, ...]
    window: Window | None  # the "every repository" window left after this tick

    @property
    def due(self) -> bool:
        return self.whole or bool(self.repos)


def decide_wake(marks: Mapping[str, Mapping[str, Any]], window: Window | None, *, slot_freed: bool, at: float,
                debounce: Debounce) -> Wake:
    """Which repositories are due at ``at``.

    A freed slot (a run reached a terminal status) or start-up (``window`` given) makes
    every repository due, debounced like a dirty mark; otherwise each marked repository
    is due on its own. The marks of the due repositories are what the shell clears.
    """
    if slot_freed:
        window = (window[0] if window is not None else at, at)
    whole = window is not None and debounce.due(window[0], window[1], at=at)
    repos = tuple(sorted(marks)) if whole else tuple(debounce.due_repos(marks, at=at))
    return Wake(whole, repos, None if whole else window)


def fresh_snapshot(ok_at: float | None, failed_at: float | None, *, at: float, interval: float) -> bool:
    """False when resync keeps failing and the last good sync is too old to trust.

    No record at all (``ok_at`` None) means webhook-fed snapshots only: nothing says they are stale.
    """
    if ok_at is None and failed_at is None:
        return True
    ok, failed = ok_at or 0.0, failed_at or 0.0
    return failed <= ok or at - ok <= STALE_AFTER_INTERVALS * interval


# Gates → candidates ---------------------------------------------------------------


def gated_verdict(verdict: Verdict, live_status: str | None) -> tuple[str, str]:
    """The stored verdict for an issue that did not pass the gates."""
    if verdict.gate == gates.ACTIVE_RUN and live_status is not None:
        return ("queued" if live_status == Status.QUEUED else "ran"), verdict.reason
    return verdict.label, verdict.reason


@dataclass(frozen=True)
class GateSplit:
    """Gate results sorted: the candidates, and a report for every issue skipped."""

    candidates: tuple[IssueView, ...]
    skipped: tuple[CandidateReport, ...]


def split_gate_results(results: Iterable[tuple[IssueView, Verdict]], live: Mapping[Any, str]) -> GateSplit:
    """Candidates in input order; each skipped issue reported once with its stored verdict."""
    candidates: list[IssueView] = []
    skipped: dict[int, CandidateReport] = {}
    for issue, verdict in results:
        if verdict.passed:
            candidates.append(issue)
        elif issue.number not in skipped:
            label, reason = gated_verdict(verdict, live.get(issue.ref))
            skipped[issue.number] = CandidateReport(issue.repo, issue.number, issue.title, label, reason,
                                                    gate=verdict.gate)
    return GateSplit(tuple(candidates), tuple(skipped.values()))


# Which candidates need the Scheduler Agent ----------------------------------------


def by_recent_activity(issues: Iterable[IssueView]) -> list[IssueView]:
    """Most recently updated first (GitHub's ISO times sort as text), then by number."""
    return sorted(issues, key=lambda issue: (issue.updated_at, -issue.number), reverse=True)


@dataclass(frozen=True)
class AssessmentPlan:
    """Stored assessments still valid for the candidates, and the candidates to ask the agent about."""

    current: Mapping[int, Assessment]
    unassessed: tuple[IssueView, ...]  # most recently active first
    forgotten: tuple[int, ...]  # stored assessments of issues no longer open


def plan_assessment(candidates: Sequence[IssueView], fingerprints: Mapping[int, str],
                    stored: Mapping[int, Assessment], open_numbers: Iterable[int]) -> AssessmentPlan:
    """An assessment counts while the issue's fingerprint is unchanged; the agent is asked about the rest."""
    current = {number: item for number, item in stored.items() if fingerprints.get(number) == item.fingerprint}
    unassessed = by_recent_activity(issue for issue in candidates if issue.number not in current)
    forgotten = tuple(sorted(set(stored) - set(open_numbers)))
    return AssessmentPlan(current, tuple(unassessed), forgotten)


def assessments_from(ranking: Ranking, fingerprints: Mapping[int, str]) -> dict[int, Assessment]:
    """The stored form of one agent answer about the candidates in ``fingerprints``."""
    found: dict[int, Assessment] = {}
    for ranked in ranking.ranking:
        found[ranked.number] = Assessment(ranked.number, fingerprints[ranked.number], "ranked", ranked.score,
                                          ranked.reason)
    for rejected in ranking.rejected:
        found[rejected.number] = Assessment(rejected.number, fingerprints[rejected.number], "rejected", None,
                                            rejected.reason)
    for number, fingerprint in fingerprints.items():
        found.setdefault(number, Assessment(number, fingerprint, "unranked", None, "not ranked by the scheduler agent"))
    return found


def unadmitted_report(issue: IssueView, assessment: Assessment | None, *, failure: str) -> CandidateReport:
    """The report of a candidate that was neither enqueued nor ranked: rejected, unranked, or not assessed."""
    if assessment is not None and assessment.outcome == "rejected":
        return CandidateReport(issue.repo, issue.number, issue.title, f"rejected:{assessment.kind}",
                               assessment.reason)
    if assessment is not None:
        return CandidateReport(issue.repo, issue.number, issue.title, "unranked", assessment.reason)
    return CandidateReport(issue.repo, issue.number, issue.title, "unranked", f"ranking failed: {failure}")
