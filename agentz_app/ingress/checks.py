"""Record CI signals (check runs, check suites, commit statuses) per head SHA.

Waking runs that wait on CI is the runs router's job; this module only keeps the
``check_results`` table current, so any process can read CI state without GitHub calls.
Commit statuses are mapped onto the check-run vocabulary: ``pending`` is in progress,
``success`` succeeds, ``failure`` and ``error`` fail.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gidgethub import routing, sansio

from agentz_app.config import Settings
from agentz_app.ingress.snapshots import PayloadError, note_repository, section
from agentz_app.store import snapshots as store
from agentz_app.store.db import Database

router = routing.Router()

_STATUS_CONCLUSIONS = {"success": "success", "failure": "failure", "error": "failure"}


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


def check_run_fields(check_run: Mapping[str, Any]) -> dict[str, Any]:
    """The ``check_results`` values for a check run payload object."""
    output = check_run.get("output")
    summary = output.get("summary") if isinstance(output, Mapping) else None
    return {
        "head_sha": _sha(check_run, "head_sha"),
        "name": _str(check_run.get("name")) or "check run",
        "source": "check_run",
        "status": _str(check_run.get("status")) or "queued",
        "conclusion": check_run.get("conclusion") if isinstance(check_run.get("conclusion"), str) else None,
        "app_slug": _slug(check_run),
        "summary": _str(summary),
        "updated_at": _str(check_run.get("completed_at")) or _str(check_run.get("started_at")),
    }


def check_suite_fields(check_suite: Mapping[str, Any]) -> dict[str, Any]:
    """The ``check_results`` values for a check suite payload object (one row per App)."""
    slug = _slug(check_suite)
    return {
        "head_sha": _sha(check_suite, "head_sha"),
        "name": f"suite:{_app_label(check_suite)}",
        "source": "check_suite",
        "status": _str(check_suite.get("status")) or "queued",
        "conclusion": check_suite.get("conclusion") if isinstance(check_suite.get("conclusion"), str) else None,
        "app_slug": slug,
        "summary": "",
        "updated_at": _str(check_suite.get("updated_at")),
    }


def status_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """The ``check_results`` values for a commit ``status`` event."""
    state = _str(data.get("state"))
    conclusion = _STATUS_CONCLUSIONS.get(state)
    return {
        "head_sha": _sha(data, "sha"),
        "name": _str(data.get("context")) or "default",
        "source": "status",
        "status": "completed" if conclusion else "in_progress",
        "conclusion": conclusion,
        "app_slug": None,
        "summary": _str(data.get("description")),
        "updated_at": _str(data.get("updated_at")),
    }


@router.register("check_run")
async def on_check_run(event: sansio.Event, gh: Any, *, db: Database, settings: Settings, **_: Any) -> None:
    """Record the check run's status and conclusion."""
    fields = check_run_fields(section(event.data, "check_run"))
    with db.begin() as session:
        store.record_check(session, note_repository(session, event.data), **fields)


@router.register("check_suite")
async def on_check_suite(event: sansio.Event, gh: Any, *, db: Database, settings: Settings, **_: Any) -> None:
    """Record the check suite's status and conclusion."""
    fields = check_suite_fields(section(event.data, "check_suite"))
    with db.begin() as session:
        store.record_check(session, note_repository(session, event.data), **fields)


@router.register("status")
async def on_status(event: sansio.Event, gh: Any, *, db: Database, settings: Settings, **_: Any) -> None:
    """Record a commit status."""
    fields = status_fields(event.data)
    with db.begin() as session:
        store.record_check(session, note_repository(session, event.data), **fields)
