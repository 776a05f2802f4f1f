"""Record CI signals (check runs, check suites, commit statuses) per head SHA.

Waking runs that wait on CI is the runs router's job; this module only keeps the
``check_results`` table current, so any process can read CI state without GitHub calls.
Check runs and suites are keyed by id, statuses by context. Commit statuses are mapped
onto the check-run vocabulary: ``pending`` is in progress, ``success`` succeeds,
``failure`` and ``error`` fail. The same mappings read GitHub's listings
(:func:`check_run_record` takes a REST check run as well as a webhook's).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gidgethub import routing, sansio

from agentz_app.config import Settings
from agentz_app.ingress.snapshots import PayloadError, note_repository, section
from agentz_app.store.ci import CIRecord, record_ci
from agentz_app.store.db import Database

router = routing.Router()

STATUS_CONCLUSIONS = {"success": "success", "failure": "failure", "error": "failure"}
# A suite GitHub reset for a re-run is open again, whatever its payload still says.
_REOPENING_SUITE_ACTIONS = frozenset({"requested", "rerequested"})


def _slug(obj: Mapping[str, Any]) -> str | None:
    app = obj.get("app")
    slug = app.get("slug") if isinstance(app, Mapping) else None
    return slug if isinstance(slug, str) else None


def _app_label(obj: Mapping[str, Any]) -> str:
    app = obj.get("app")
    if not isinstance(app, Mapping):
        return "unknown"
    for key in ("slug", "name", "id"):
        if app.get(key) not in (None, ""):
            return str(app[key])
    return "unknown"


def _sha(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise PayloadError(f"payload has no '{key}'")
    return value


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _id(obj: Mapping[str, Any]) -> int:
    value = obj.get("id")
    if isinstance(value, bool) or not isinstance(value, int):
        raise PayloadError("payload has no integer 'id'")
    return value


def _conclusion(obj: Mapping[str, Any]) -> str | None:
    value = obj.get("conclusion")
    return value if isinstance(value, str) else None


def check_run_record(check_run: Mapping[str, Any]) -> CIRecord:
    """The CI record of a check run (webhook payload object or REST answer)."""
    output = check_run.get("output")
    summary = output.get("summary") if isinstance(output, Mapping) else None
    suite = check_run.get("check_suite")
    suite_id = suite.get("id") if isinstance(suite, Mapping) else None
    return CIRecord(
        head_sha=_sha(check_run, "head_sha"), source="check_run", key=str(_id(check_run)),
        name=_str(check_run.get("name")) or "check run", status=_str(check_run.get("status")) or "queued",
        conclusion=_conclusion(check_run), app_slug=_slug(check_run),
        suite_id=suite_id if isinstance(suite_id, int) and not isinstance(suite_id, bool) else None,
        summary=_str(summary), updated_at=_str(check_run.get("completed_at")) or _str(check_run.get("started_at")),
    )


def check_suite_record(check_suite: Mapping[str, Any], *, action: str | None = None) -> CIRecord:
    """The CI record of a check suite; ``requested``/``rerequested`` reopen it."""
    status = _str(check_suite.get("status")) or "queued"
    conclusion = _conclusion(check_suite)
    if action in _REOPENING_SUITE_ACTIONS:
        status, conclusion = "queued", None
    runs = check_suite.get("latest_check_runs_count")
    return CIRecord(
        head_sha=_sha(check_suite, "head_sha"), source="check_suite", key=str(_id(check_suite)),
        name=f"suite:{_app_label(check_suite)}", status=status, conclusion=conclusion, app_slug=_slug(check_suite),
        runs=runs if isinstance(runs, int) and not isinstance(runs, bool) else 0,
        updated_at=_str(check_suite.get("updated_at")),
    )


def status_record(data: Mapping[str, Any], *, sha: str | None = None) -> CIRecord:
    """The CI record of a commit status (the ``status`` event, or an item of a status listing with ``sha``)."""
    state = _str(data.get("state"))
    conclusion = STATUS_CONCLUSIONS.get(state)
    context = _str(data.get("context")) or "default"
    return CIRecord(
        head_sha=sha or _sha(data, "sha"), source="status", key=context, name=context,
        status="completed" if conclusion else "in_progress", conclusion=conclusion,
        summary=_str(data.get("description")), updated_at=_str(data.get("updated_at")),
    )


def records_of(event: sansio.Event) -> list[CIRecord]:
    """Every CI record a ``check_run``, ``check_suite`` or ``status`` delivery carries."""
    data = event.data
    if event.event == "status":
        return [status_record(data)]
    if event.event == "check_suite":
        return [check_suite_record(section(data, "check_suite"), action=_str(data.get("action")) or None)]
    check_run = section(data, "check_run")
    records = [check_run_record(check_run)]
    suite = check_run.get("check_suite")
    # The suite inside a check run event is recorded too, when it says how recent it is.
    if isinstance(suite, Mapping) and isinstance(suite.get("id"), int) and suite.get("head_sha") \
            and suite.get("updated_at"):
        if not isinstance(suite.get("app"), Mapping):
            suite = {**suite, "app": check_run.get("app")}
        records.append(check_suite_record(suite))
    return records


def record_event(db: Database, settings: Settings, event: sansio.Event) -> tuple[str, list[CIRecord]]:
    """Store the delivery's CI records; returns the repository and the records."""
    records = records_of(event)
    with db.begin() as session:
        repo = note_repository(session, event.data)
        for record in records:
            record_ci(session, repo, record, own_slug=settings.github_app_slug)
    return repo, records


@router.register("check_run")
async def on_check_run(event: sansio.Event, gh: Any, *, db: Database, settings: Settings, **_: Any) -> None:
    """Record the check run (and the suite it carries)."""
    record_event(db, settings, event)


@router.register("check_suite")
async def on_check_suite(event: sansio.Event, gh: Any, *, db: Database, settings: Settings, **_: Any) -> None:
    """Record the check suite's status and conclusion."""
    record_event(db, settings, event)


@router.register("status")
async def on_status(event: sansio.Event, gh: Any, *, db: Database, settings: Settings, **_: Any) -> None:
    """Record a commit status."""
    record_event(db, settings, event)
