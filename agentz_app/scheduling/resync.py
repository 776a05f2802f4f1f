"""Repair snapshots from GitHub and ask GitHub to redeliver failed webhooks.

Webhooks can be missed (downtime, a failed delivery). :func:`resync_repo` lists the
open issues and pull requests — the client's ETag cache makes an unchanged listing
a free 304 — upserts what differs, closes what is no longer open, and marks the
repository dirty only when something really changed. :func:`redeliver_failed`
replays failed deliveries GitHub still has, unless our inbox already stored them,
reading GitHub's list (newest first) only back to the horizon.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gidgethub.abc import GitHubAPI
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from agentz_app.config import Settings
from agentz_app.errors import GitHubError
from agentz_app.github.app import GitHubApp
from agentz_app.ingress.installations import discover_repositories
from agentz_app.logs import get_logger
from agentz_app.scheduling.lookups import refresh_lookups
from agentz_app.store import snapshots
from agentz_app.store.db import Database
from agentz_app.store.models import Delivery, IssueSnapshot, PullSnapshot, Repository, now
from agentz_app.store.scheduler_state import mark_dirty, record_resync
from agentz_app.timestamps import github_time

log = get_logger(__name__)


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


def _close_missing(session: Session, model: Any, repo: str, listed: set[int]) -> int:
    """Close snapshots still open here but absent from GitHub's list of open ones."""
    closed = 0
    for row in session.scalars(select(model).where(model.repo == repo, model.state == "open")):
        if row.number not in listed:
            row.state = "closed"
            row.synced_at = now()
            closed += 1
    return closed


def _record_failed_resync(db: Database, repo: str, error: str) -> None:
    with db.begin() as session:
        record_resync(session, repo, ok=False, error=error)


def _store_listing(db: Database, repo: str, issues: list[dict[str, Any]], pulls: list[dict[str, Any]]) -> ResyncResult:
    with db.begin() as session:
        issues_changed = sum(snapshots.upsert_issue(session, repo, item) for item in issues)
        pulls_changed = sum(snapshots.upsert_pull(session, repo, item) for item in pulls)
        issues_closed = _close_missing(session, IssueSnapshot, repo, {int(item["number"]) for item in issues})
        pulls_closed = _close_missing(session, PullSnapshot, repo, {int(item["number"]) for item in pulls})
        result = ResyncResult(repo, issues_changed, pulls_changed, issues_closed + pulls_closed)
        if result.changed:
            mark_dirty(session, repo, reason="resync")
        record_resync(session, repo, ok=True)
    return result


async def resync_repo(gh: GitHubAPI, db: Database, repo: str) -> ResyncResult:
    """List open issues and PRs, repair the snapshots, mark dirty on real changes."""
    try:
        issues = [item async for item in gh.getiter(f"/repos/{repo}/issues?state=open&per_page=100")]
        pulls = [item async for item in gh.getiter(f"/repos/{repo}/pulls?state=open&per_page=100")]
    except Exception as exc:
        await db.run(_record_failed_resync, db, repo, f"{type(exc).__name__}: {exc}")
        raise
    issues = [item for item in issues if isinstance(item, dict) and "number" in item]
    pulls = [item for item in pulls if isinstance(item, dict) and "number" in item]
    result = await db.run(_store_listing, db, repo, issues, pulls)
    if result.changed:
        log.info("resync repaired snapshots", repo=repo, issues=result.issues_changed, pulls=result.pulls_changed,
                 closed=result.closed)
    return result


def failed_deliveries(deliveries: Iterable[Any], *, since: float, known: set[str]) -> list[int]:
    """Ids of failed deliveries since ``since`` never stored by us nor since delivered (pure)."""
    succeeded: set[str] = set()
    failed: dict[str, int] = {}
    for item in deliveries:
        if not isinstance(item, dict):
            continue
        guid = str(item.get("guid") or "")
        if not guid or github_time(item.get("delivered_at")) < since:
            continue
        code = item.get("status_code")
        ok = item.get("status") == "OK" or (isinstance(code, int) and 200 <= code < 300)
        if ok:
            succeeded.add(guid)
        elif guid not in failed:
            failed[guid] = int(item["id"])
    return [delivery for guid, delivery in failed.items() if guid not in succeeded and guid not in known]


async def deliveries_since(app_gh: GitHubAPI, since: float) -> list[dict[str, Any]]:
    """The App's webhook deliveries from ``since`` on; GitHub lists them newest first, so paging stops
    at the first older one."""
    listed: list[dict[str, Any]] = []
    async for item in app_gh.getiter("/app/hook/deliveries?per_page=100"):
        if not isinstance(item, dict):
            continue
        if github_time(item.get("delivered_at")) < since:
            break
        listed.append(item)
    return listed


def _stored_deliveries(db: Database, guids: set[str]) -> set[str]:
    with db.read() as session:
        return set(session.scalars(select(Delivery.delivery_id).where(Delivery.delivery_id.in_(list(guids)))))


async def redeliver_failed(app_gh: GitHubAPI, since: float, *, db: Database) -> list[int]:
    """Ask GitHub to redeliver failed deliveries our inbox never stored; returns their ids."""
    listed = await deliveries_since(app_gh, since)
    guids = {str(item.get("guid")) for item in listed if item.get("guid")}
    known = await db.run(_stored_deliveries, db, guids)
    ids = failed_deliveries(listed, since=since, known=known)
    for delivery_id in ids:
        await app_gh.post(f"/app/hook/deliveries/{delivery_id}/attempts", data={})
    if ids:
        log.info("asked GitHub to redeliver failed webhooks", count=len(ids))
    return ids


def _active_repositories(db: Database) -> list[tuple[str, int]]:
    with db.read() as session:
        return [
            (name, installation)
            for name, installation in session.execute(
                select(Repository.full_name, Repository.installation_id).where(Repository.active.is_(True))
            )
            if installation is not None
        ]


async def resync_all(github: GitHubApp, db: Database, settings: Settings, *,
                     redeliver_since: float | None = None) -> int:
    """Discover installations, resync every active repository, refresh dependency look-ups, redeliver.

    ``github`` is the App client factory (``client(installation_id)``, ``app_client()``,
    ``list_installations()``, ``installation_repositories(id)``). One step's or one
    repository's failure is logged and does not stop the others; returns how many
    repositories changed.
    """
    try:
        await discover_repositories(github, db)
    except (GitHubError, SQLAlchemyError) as exc:
        log.warning("listing the App's installations failed", error=f"{type(exc).__name__}: {exc}")
    repos = await db.run(_active_repositories, db)
    changed = 0
    for name, installation in repos:
        try:
            result = await resync_repo(github.client(installation), db, name)
        except (GitHubError, SQLAlchemyError) as exc:
            log.warning("resync of a repository failed", repo=name, error=f"{type(exc).__name__}: {exc}")
            continue
        changed += int(result.changed)
    try:
        await refresh_lookups(github, db, older_than=now() - settings.resync_interval_seconds)
    except (GitHubError, SQLAlchemyError) as exc:
        log.warning("refreshing dependency look-ups failed", error=f"{type(exc).__name__}: {exc}")
    since = redeliver_since if redeliver_since is not None else now() - 3 * settings.resync_interval_seconds
    try:
        await redeliver_failed(github.app_client(), since, db=db)
    except (GitHubError, SQLAlchemyError) as exc:
        log.warning("listing failed webhook deliveries failed", error=f"{type(exc).__name__}: {exc}")
    return changed
