"""The issues the interactive picker lists: gate verdicts and the Scheduler Agent's word, from the snapshots."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from agentz_app.store.db import Database
from agentz_app.store.models import IssueAssessment, IssueSnapshot


@dataclass(frozen=True)
class Candidate:
    """An open issue as the picker lists it: the gates' verdict and the Scheduler Agent's word."""

    number: int
    title: str
    verdict: str
    verdict_reason: str
    score: int | None
    reason: str


def stored_candidates(db: Database, repo: str) -> list[Candidate]:
    """Open issues of ``repo`` from the snapshots, best Scheduler Agent score first."""
    with db.read() as session:
        issues = session.scalars(
            select(IssueSnapshot).where(IssueSnapshot.repo == repo, IssueSnapshot.state == "open",
                                        IssueSnapshot.is_pull_request.is_(False))
        ).all()
        assessed = {a.number: a for a in session.scalars(select(IssueAssessment).where(IssueAssessment.repo == repo))}
        found = [
            Candidate(
                number=issue.number, title=issue.title, verdict=issue.verdict or "not gated yet",
                verdict_reason=issue.verdict_reason or "",
                score=assessed[issue.number].score if issue.number in assessed else None,
                reason=assessed[issue.number].reason if issue.number in assessed else "",
            )
            for issue in issues
        ]
    return sorted(found, key=lambda c: (c.score is None, -(c.score or 0), c.number))
