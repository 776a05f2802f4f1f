"""CI signals per head SHA (check runs, check suites, commit statuses) and which repositories have CI.

Rows are keyed by source and GitHub's own key: a check run's or suite's id, a status's
context. Deliveries arrive in any order and more than once; a row only moves forward
(by GitHub's timestamp, then queued < in_progress < completed within one timestamp).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from agentz_app.domain.ci import CheckSignal, SuiteSignal, is_own
from agentz_app.store.models import CheckResult, RepositoryCI, now
from agentz_app.store.snapshots import _assign, _locked

MAX_SUMMARY_CHARS = 65_535
_STATUS_RANK = {"queued": 0, "requested": 0, "waiting": 0, "pending": 0, "in_progress": 1, "completed": 2}


@dataclass(frozen=True)
class CIRecord:
    """One CI signal as GitHub reported it (a webhook or a listing)."""

    head_sha: str
    source: str  # check_run | check_suite | status
    key: str
    name: str
    status: str
    conclusion: str | None
    app_slug: str | None = None
    suite_id: int | None = None
    summary: str = ""
    runs: int = 0
    updated_at: str = ""


def record_ci(session: Session, repo: str, record: CIRecord, *, own_slug: str) -> bool:
    """Store ``record`` unless a newer state of the same signal is stored; True when something changed.

    A check run or status of another App also marks the repository as one that has CI.
    """
    row, created = _locked(
        session, CheckResult,
        {"repo": repo, "head_sha": record.head_sha, "source": record.source, "key": record.key[:255]},
        {"name": record.name[:255], "status": record.status},
    )
    if not created and record.updated_at and row.updated_at:
        incoming = (record.updated_at, _STATUS_RANK.get(record.status, 0))
        stored = (row.updated_at, _STATUS_RANK.get(row.status, 0))
        if incoming < stored:
            return False
    moment = now()
    state_changed = created or (row.status, row.conclusion) != (record.status, record.conclusion)
    values: dict[str, Any] = {
        "name": record.name[:255],
        "status": record.status,
        "conclusion": record.conclusion,
        "app_slug": record.app_slug,
        "suite_id": record.suite_id if record.suite_id is not None else row.suite_id,
        "summary": record.summary[:MAX_SUMMARY_CHARS],
        "runs": max(record.runs, row.runs or 0),
        "updated_at": record.updated_at or row.updated_at,
    }
    if created:
        values["first_seen_at"] = moment
    if state_changed:
        values["changed_at"] = moment
    changed = _assign(row, values) or created
    if record.source in ("check_run", "status"):
        signal = CheckSignal("status" if record.source == "status" else "check_run", record.key, record.name,
                             record.status, record.conclusion, app_slug=record.app_slug)
        if not is_own(signal, own_slug):
            note_ci(session, repo, source=f"{record.source}:{record.app_slug or record.name}")
    return changed


def note_ci(session: Session, repo: str, *, source: str) -> None:
    """Remember that ``repo`` has CI (first source wins)."""
    _locked(session, RepositoryCI, {"repo": repo}, {"first_source": source[:255], "first_seen_at": now()})


def repo_has_ci(session: Session, repo: str) -> bool:
    """True when ``repo`` has ever reported CI."""
    return session.get(RepositoryCI, repo) is not None


def ci_signals(session: Session, repo: str, head_sha: str) -> tuple[list[CheckSignal], list[SuiteSignal]]:
    """The check runs and statuses, and the check suites, stored for a head SHA."""
    checks: list[CheckSignal] = []
    suites: list[SuiteSignal] = []
    rows = session.scalars(select(CheckResult).where(CheckResult.repo == repo, CheckResult.head_sha == head_sha))
    for row in rows:
        if row.source == "check_suite":
            if row.key.isdigit():
                suites.append(SuiteSignal(int(row.key), row.app_slug, row.status, row.conclusion, runs=row.runs,
                                          first_seen_at=row.first_seen_at, changed_at=row.changed_at))
            continue
        kind: Literal["check_run", "status"] = "status" if row.source == "status" else "check_run"
        checks.append(CheckSignal(kind, row.key, row.name, row.status, row.conclusion, app_slug=row.app_slug,
                                  suite_id=row.suite_id, summary=row.summary, changed_at=row.changed_at))
    return checks, suites


def heads_changed_since(session: Session, moment: float) -> set[tuple[str, str]]:
    """The (repository, head SHA) pairs with a CI signal that changed at or after ``moment``."""
    rows = session.execute(select(CheckResult.repo, CheckResult.head_sha)
                           .where(CheckResult.changed_at >= moment).distinct())
    return {(repo, sha) for repo, sha in rows}
