"""Record CI signals (check runs, check suites, commit statuses) per head SHA.

This module keeps the ``check_results`` table current, so any process can read CI state
without GitHub calls, and in the same transaction wakes the runs on a head whose CI a
delivery can decide (a completed check run or suite of another App, a final status);
a worker settles them.
Check runs and suites are keyed by id, statuses by context. Commit statuses are mapped
onto the check-run vocabulary: ``pending`` is in progress, ``success`` succeeds,
``failure`` and ``error`` fail. The same mappings read GitHub's listings
(:func:`check_run_record` takes a REST check run as well as a webhook's).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gidgethub import routing, sansio
from gidgethub.abc import GitHubAPI

from agentz_app.config import Settings
from agentz_app.domain.states import Status
from agentz_app.github.events import (
    BadPayload,
    CheckRun,
    CheckRunEvent,
    CheckSuite,
    CheckSuiteEvent,
    CommitStatus,
    StatusEvent,
    parse_payload,
)
from agentz_app.ingress.snapshots import note_repository
from agentz_app.reporting.checks import is_own_check
from agentz_app.store.ci import CIRecord, record_ci
from agentz_app.store.db import Database
from agentz_app.store.models import now
from agentz_app.store.wakeups import record_wakeup, runs_on_head

router = routing.Router()

STATUS_CONCLUSIONS = {"success": "success", "failure": "failure", "error": "failure"}
# A suite GitHub reset for a re-run is open again, whatever its payload still says.
_REOPENING_SUITE_ACTIONS = frozenset({"requested", "rerequested"})

CIEvent = CheckRunEvent | CheckSuiteEvent | StatusEvent
# Runs a CI result on their head can move: waiting ones settle, done ones reopen on a failure.
SETTLED_BY_CI = (Status.WAITING_CHECKS, Status.DONE)


def _text(value: str | None) -> str:
    return value or ""


def check_run_record(check_run: CheckRun | Mapping[str, Any]) -> CIRecord:
    """The CI record of a check run (webhook payload object or REST answer)."""
    run = check_run if isinstance(check_run, CheckRun) else parse_payload(CheckRun, "check run", check_run)
    suite_id = run.check_suite.id if run.check_suite is not None else None
    return CIRecord(
        head_sha=run.head_sha, source="check_run", key=str(run.id), name=run.name or "check run",
        status=run.status or "queued", conclusion=run.conclusion, app_slug=run.app.slug if run.app else None,
        suite_id=suite_id, summary=_text(run.output.summary if run.output else None),
        updated_at=run.completed_at or run.started_at or "",
    )


def check_suite_record(check_suite: CheckSuite | Mapping[str, Any], *, action: str | None = None) -> CIRecord:
    """The CI record of a check suite; ``requested``/``rerequested`` reopen it."""
    suite = check_suite if isinstance(check_suite, CheckSuite) else parse_payload(CheckSuite, "check suite",
                                                                                 check_suite)
    status, conclusion = suite.status or "queued", suite.conclusion
    if action in _REOPENING_SUITE_ACTIONS:
        status, conclusion = "queued", None
    return CIRecord(
        head_sha=suite.head_sha, source="check_suite", key=str(suite.id),
        name=f"suite:{suite.app.label if suite.app else 'unknown'}", status=status, conclusion=conclusion,
        app_slug=suite.app.slug if suite.app else None, runs=suite.latest_check_runs_count or 0,
        updated_at=_text(suite.updated_at),
    )


def _status_and_sha(status: StatusEvent | CommitStatus | Mapping[str, Any],
                    sha: str | None) -> tuple[CommitStatus, str]:
    if isinstance(status, Mapping):
        if sha is None:
            status = parse_payload(StatusEvent, "status", status)
        else:
            status = parse_payload(CommitStatus, "status", status)
    if isinstance(status, StatusEvent):
        return status.status, sha or status.sha
    if not sha:
        raise BadPayload("status", "sha", "is missing")
    return status, sha


def status_record(status: StatusEvent | CommitStatus | Mapping[str, Any], *, sha: str | None = None) -> CIRecord:
    """The CI record of a commit status (the ``status`` event, or an item of a status listing with ``sha``)."""
    commit_status, head_sha = _status_and_sha(status, sha)
    conclusion = STATUS_CONCLUSIONS.get(_text(commit_status.state))
    context = commit_status.context or "default"
    return CIRecord(
        head_sha=head_sha, source="status", key=context, name=context,
        status="completed" if conclusion else "in_progress", conclusion=conclusion,
        summary=_text(commit_status.description), updated_at=_text(commit_status.updated_at),
    )


def _carried_suite(run: CheckRun) -> CheckSuite | None:
    """The suite a check run event carries, when it says how recent it is (None otherwise)."""
    suite = run.check_suite
    if suite is None or suite.id is None or not suite.head_sha or not suite.updated_at:
        return None
    return CheckSuite(id=suite.id, head_sha=suite.head_sha, status=suite.status, conclusion=suite.conclusion,
                      app=suite.app or run.app, updated_at=suite.updated_at)


def records_from(event: CIEvent) -> list[CIRecord]:
    """Every CI record a parsed ``check_run``, ``check_suite`` or ``status`` event carries."""
    if isinstance(event, StatusEvent):
        return [status_record(event)]
    if isinstance(event, CheckSuiteEvent):
        return [check_suite_record(event.check_suite, action=event.action)]
    records = [check_run_record(event.check_run)]
    suite = _carried_suite(event.check_run)
    if suite is not None:
        records.append(check_suite_record(suite))
    return records


def parse_ci_event(event: sansio.Event) -> CIEvent:
    """The typed ``check_run``, ``check_suite`` or ``status`` event of a delivery."""
    if event.event == "status":
        return StatusEvent.from_event(event)
    if event.event == "check_suite":
        return CheckSuiteEvent.from_event(event)
    return CheckRunEvent.from_event(event)


def own_check(event: CheckRunEvent | CheckSuiteEvent, settings: Settings) -> bool:
    """True when the delivery's check run or suite is Agent-Z's own."""
    app = event.check_run.app if isinstance(event, CheckRunEvent) else event.check_suite.app
    if app is not None and app.slug:
        return app.slug == settings.github_app_slug
    return isinstance(event, CheckRunEvent) and is_own_check(event.check_run.name or "")


def decides_ci(event: CIEvent, settings: Settings) -> bool:
    """True when the delivery can decide CI on its head: another App's completed check run or
    suite, or a final commit status."""
    if isinstance(event, StatusEvent):
        return (event.state or "") in STATUS_CONCLUSIONS
    return event.action == "completed" and not own_check(event, settings)


def record_event(db: Database, settings: Settings, event: sansio.Event) -> list[str]:
    """Store the delivery's CI records and wake the runs it may settle, in one transaction;
    returns the ids of the runs woken."""
    parsed = parse_ci_event(event)
    records = records_from(parsed)
    woken: list[str] = []
    with db.begin() as session:
        repo = note_repository(session, parsed)
        for record in records:
            record_ci(session, repo, record, own_slug=settings.github_app_slug)
        if decides_ci(parsed, settings):
            at = now()
            for head_sha in dict.fromkeys(record.head_sha for record in records):
                for run_id in runs_on_head(session, repo, head_sha, SETTLED_BY_CI):
                    record_wakeup(session, run_id, reason="ci", at=at)
                    woken.append(run_id)
    return woken


@router.register("check_run")
async def on_check_run(event: sansio.Event, gh: GitHubAPI | None, *, db: Database, settings: Settings,
                       **_: Any) -> None:
    """Record the check run (and the suite it carries); a completed one wakes the runs on its head."""
    await db.run(record_event, db, settings, event)


@router.register("check_suite")
async def on_check_suite(event: sansio.Event, gh: GitHubAPI | None, *, db: Database, settings: Settings,
                         **_: Any) -> None:
    """Record the check suite's status and conclusion; a completed one wakes the runs on its head."""
    await db.run(record_event, db, settings, event)


@router.register("status")
async def on_status(event: sansio.Event, gh: GitHubAPI | None, *, db: Database, settings: Settings, **_: Any) -> None:
    """Record a commit status; a final one wakes the runs on its head."""
    await db.run(record_event, db, settings, event)
