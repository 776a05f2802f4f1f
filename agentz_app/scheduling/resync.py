"""Repair snapshots from GitHub and ask GitHub to redeliver failed webhooks.

Webhooks can be missed (downtime, a failed delivery). :func:`resync_repo` lists the
open issues and pull requests — the client's ETag cache makes an unchanged listing
a free 304 — upserts what differs, closes what is no longer open, and marks the
repository dirty only when something really changed. :func:`redeliver_failed`
replays failed deliveries GitHub still has, unless our inbox already stored them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from agentz_app.logs import get_logger
from agentz_app.scheduling.deps import closing_references
from agentz_app.scheduling.service import RESYNC_PREFIX
from agentz_app.scheduling.signals import mark_dirty
from agentz_app.store.db import Database
from agentz_app.store.models import Delivery, IssueSnapshot, KeyValue, PullSnapshot, now

log = get_logger(__name__)

_ISSUE_FIELDS = ("title", "body", "state", "state_reason", "labels", "assignees", "author", "is_pull_request",
                 "updated_at")
_PULL_FIELDS = ("title", "body", "state", "merged", "draft", "author", "head_ref", "head_sha", "base_ref",
                "linked_issues", "updated_at")


def _login(user: Any) -> str:
    return str(user.get("login", "")) if isinstance(user, dict) else ""


def issue_fields(data: dict[str, Any]) -> dict[str, Any]:
    """Snapshot columns from a REST issue object (pure)."""
    return {
        "title": data.get("title") or "",
        "body": data.get("body") or "",
        "state": data.get("state") or "open",
        "state_reason": data.get("state_reason"),
        "labels": [label["name"] if isinstance(label, dict) else str(label) for label in data.get("labels") or []],
        "assignees": [_login(user) for user in data.get("assignees") or []],
        "author": _login(data.get("user")),
        "is_pull_request": bool(data.get("pull_request")),
        "updated_at": data.get("updated_at") or "",
    }


def pull_fields(data: dict[str, Any], repo: str) -> dict[str, Any]:
    """Snapshot columns from a REST pull-request object (pure)."""
    head = data.get("head") or {}
    base = data.get("base") or {}
    text = f"{data.get('title') or ''}\n{data.get('body') or ''}"
    return {
        "title": data.get("title") or "",
        "body": data.get("body") or "",
        "state": data.get("state") or "open",
        "merged": bool(data.get("merged") or data.get("merged_at")),
        "draft": bool(data.get("draft")),
        "author": _login(data.get("user")),
        "head_ref": head.get("ref") or "",
        "head_sha": head.get("sha") or "",
        "base_ref": base.get("ref") or "",
        "linked_issues": sorted({ref.number for ref in closing_references(text, repo) if ref.repo == repo}),
        "updated_at": data.get("updated_at") or "",
    }


def _apply(row: Any, fields: dict[str, Any], names: Iterable[str]) -> bool:
    """Copy ``fields`` onto ``row``; True when a value changed. Older data never wins."""
    if row.updated_at and fields["updated_at"] and fields["updated_at"] < row.updated_at:
        return False
    changed = False
    for name in names:
        if getattr(row, name) != fields[name]:
            setattr(row, name, fields[name])
            changed = True
    row.synced_at = now()
    return changed


@dataclass(frozen=True)
class ResyncResult:
    """What one resync changed."""

    repo: str
    issues_changed: int
    pulls_changed: int
    closed: int

    @property
    def changed(self) -> bool:
        return bool(self.issues_changed or self.pulls_changed or self.closed)


def _sync_issues(session: Session, repo: str, listed: list[dict[str, Any]]) -> tuple[int, int]:
    existing = {row.number: row for row in session.scalars(select(IssueSnapshot).where(IssueSnapshot.repo == repo))}
    changed = 0
    seen: set[int] = set()
    for data in listed:
        number = int(data["number"])
        seen.add(number)
        fields = issue_fields(data)
        row = existing.get(number)
        if row is None:
            session.add(IssueSnapshot(repo=repo, number=number, **fields, synced_at=now()))
            changed += 1
        elif _apply(row, fields, _ISSUE_FIELDS):
            changed += 1
    closed = 0
    for number, row in existing.items():
        if row.state == "open" and number not in seen:
            row.state = "closed"
            row.synced_at = now()
            closed += 1
    return changed, closed


def _sync_pulls(session: Session, repo: str, listed: list[dict[str, Any]]) -> tuple[int, int]:
    existing = {row.number: row for row in session.scalars(select(PullSnapshot).where(PullSnapshot.repo == repo))}
    changed = 0
    seen: set[int] = set()
    for data in listed:
        number = int(data["number"])
        seen.add(number)
        fields = pull_fields(data, repo)
        row = existing.get(number)
        if row is None:
            session.add(PullSnapshot(repo=repo, number=number, **fields, synced_at=now()))
            changed += 1
        elif _apply(row, fields, _PULL_FIELDS):
            changed += 1
    closed = 0
    for number, row in existing.items():
        if row.state == "open" and number not in seen:
            row.state = "closed"
            row.synced_at = now()
            closed += 1
    return changed, closed


def _record_resync(session: Session, repo: str, *, ok: bool, error: str = "") -> None:
    row = session.get(KeyValue, RESYNC_PREFIX + repo)
    value = dict(row.value) if row is not None else {}
    if ok:
        value.update(ok_at=now(), error="")
    else:
        value.update(failed_at=now(), error=error[:500])
    if row is None:
        session.add(KeyValue(key=RESYNC_PREFIX + repo, value=value, updated_at=now()))
    else:
        row.value = value
        row.updated_at = now()


async def resync_repo(gh: Any, db: Database, repo: str) -> ResyncResult:
    """List open issues and PRs, repair the snapshots, mark dirty on real changes."""
    try:
        issues = [item async for item in gh.getiter(f"/repos/{repo}/issues?state=open&per_page=100")]
        pulls = [item async for item in gh.getiter(f"/repos/{repo}/pulls?state=open&per_page=100")]
    except Exception as exc:
        with db.begin() as session:
            _record_resync(session, repo, ok=False, error=f"{type(exc).__name__}: {exc}")
        raise
    with db.begin() as session:
        issues_changed, issues_closed = _sync_issues(session, repo, [i for i in issues if isinstance(i, dict)])
        pulls_changed, pulls_closed = _sync_pulls(session, repo, [p for p in pulls if isinstance(p, dict)])
        result = ResyncResult(repo, issues_changed, pulls_changed, issues_closed + pulls_closed)
        if result.changed:
            mark_dirty(session, repo, reason="resync")
        _record_resync(session, repo, ok=True)
    if result.changed:
        log.info("resync repaired snapshots", repo=repo, issues=issues_changed, pulls=pulls_changed,
                 closed=result.closed)
    return result


def _parse_time(value: Any) -> float:
    if not isinstance(value, str) or not value:
        return 0.0
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def failed_deliveries(deliveries: Iterable[Any], *, since: float, known: set[str]) -> list[int]:
    """Ids of failed deliveries since ``since`` never stored by us nor since delivered (pure)."""
    succeeded: set[str] = set()
    failed: dict[str, int] = {}
    for item in deliveries:
        if not isinstance(item, dict):
            continue
        guid = str(item.get("guid") or "")
        if not guid or _parse_time(item.get("delivered_at")) < since:
            continue
        code = item.get("status_code")
        ok = item.get("status") == "OK" or (isinstance(code, int) and 200 <= code < 300)
        if ok:
            succeeded.add(guid)
        elif guid not in failed:
            failed[guid] = int(item["id"])
    return [delivery for guid, delivery in failed.items() if guid not in succeeded and guid not in known]


async def redeliver_failed(app_gh: Any, since: float, *, db: Database) -> list[int]:
    """Ask GitHub to redeliver failed deliveries our inbox never stored; returns their ids."""
    listed = [item async for item in app_gh.getiter("/app/hook/deliveries?per_page=100")]
    guids = {str(item.get("guid")) for item in listed if isinstance(item, dict) and item.get("guid")}
    with db.read() as session:
        known = set(session.scalars(select(Delivery.delivery_id).where(Delivery.delivery_id.in_(list(guids)))))
    ids = failed_deliveries(listed, since=since, known=known)
    for delivery_id in ids:
        await app_gh.post(f"/app/hook/deliveries/{delivery_id}/attempts", data={})
    if ids:
        log.info("asked GitHub to redeliver failed webhooks", count=len(ids))
    return ids
