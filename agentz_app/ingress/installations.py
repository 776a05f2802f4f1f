"""Track where the App is installed: installations and their repositories.

A deleted or suspended installation makes its repositories inactive, so nothing is
scheduled where the App can no longer act; unsuspending brings them back.

Webhooks keep the set current; :func:`discover_repositories` rebuilds it from GitHub
(``GET /app/installations``, then ``GET /installation/repositories`` per installation),
so an App installed or changed while the receiver was down still learns its
repositories at the next start or resync.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gidgethub import routing, sansio
from gidgethub.abc import GitHubAPI
from sqlalchemy import select
from sqlalchemy.orm import Session

from agentz_app.config import Settings
from agentz_app.errors import GitHubError
from agentz_app.github.events import (
    BadPayload,
    InstallationEvent,
    InstallationRepositoriesEvent,
    InstallationRepository,
)
from agentz_app.logs import get_logger
from agentz_app.store import snapshots as store
from agentz_app.store.db import Database
from agentz_app.store.models import Installation, Repository

router = routing.Router()
log = get_logger(__name__)


def _id(obj: Mapping[str, Any]) -> int:
    value = obj.get("id")
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadPayload("installation listing", "id", "is missing")
    return value


def _add(session: Session, repositories: Sequence[InstallationRepository], installation_id: int) -> None:
    """Upsert the listed repositories that have an id and a name."""
    for repository in repositories:
        if repository.id is not None and repository.full_name is not None:
            store.upsert_repository(session, repository.model_dump(exclude_none=True), installation_id=installation_id)


@router.register("installation")
async def on_installation(event: sansio.Event, gh: GitHubAPI | None, *, db: Database, settings: Settings,
                          **_: object) -> None:
    """Record an installation and its repositories; deactivate them when it goes away."""
    parsed = InstallationEvent.from_event(event)
    installation_id = parsed.installation.id
    installation, repositories = parsed.installation.model_dump(), parsed.repositories or ()

    def record() -> None:
        with db.begin() as session:
            if parsed.action == "deleted":
                store.upsert_installation(session, installation, suspended=False, deleted=True)
                _add(session, repositories, installation_id)
                store.set_installation_state(session, installation_id, suspended=False, deleted=True)
            elif parsed.action == "suspend":
                store.upsert_installation(session, installation, suspended=True)
                store.set_installation_state(session, installation_id, suspended=True, deleted=False)
            else:  # created, unsuspend, new_permissions_accepted
                store.upsert_installation(session, installation, suspended=False)
                _add(session, repositories, installation_id)
                store.set_installation_state(session, installation_id, suspended=False, deleted=False)

    await db.run(record)


@router.register("installation_repositories")
async def on_installation_repositories(
    event: sansio.Event, gh: GitHubAPI | None, *, db: Database, settings: Settings, **_: object
) -> None:
    """Follow repositories being added to or removed from an installation."""
    parsed = InstallationRepositoriesEvent.from_event(event)
    installation_id = parsed.installation.id
    removed = parsed.repositories_removed

    def record() -> None:
        with db.begin() as session:
            store.upsert_installation(session, parsed.installation.model_dump())
            _add(session, parsed.repositories_added, installation_id)
            _add(session, removed, installation_id)
            store.set_repositories_active(session, [repo.id for repo in removed if repo.id is not None],
                                          active=False)

    await db.run(record)


# Discovery without webhooks ----------------------------------------------------------


@dataclass
class Discovery:
    """What one reconciliation with GitHub's list of installations changed."""

    added: list[str] = field(default_factory=list)  # repositories now active (new or back)
    removed: list[str] = field(default_factory=list)  # repositories no longer reachable
    suspended: list[int] = field(default_factory=list)  # installations suspended now
    deleted: list[int] = field(default_factory=list)  # installations GitHub no longer lists
    failed: list[int] = field(default_factory=list)  # installations whose repositories could not be listed

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.suspended or self.deleted)


def _active_names(session: Session, installation_id: int) -> dict[int, str]:
    return {
        repo_id: name for repo_id, name in session.execute(
            select(Repository.id, Repository.full_name).where(
                Repository.installation_id == installation_id, Repository.active.is_(True)
            )
        )
    }


def reconcile_installation(session: Session, installation: Mapping[str, Any],
                           repositories: Sequence[Mapping[str, Any]] | None, result: Discovery) -> None:
    """Record one listed installation; with ``repositories`` (None: unknown), make its set exactly those."""
    installation_id = _id(installation)
    suspended = installation.get("suspended_at") is not None
    before = session.get(Installation, installation_id)
    was_suspended = before is not None and before.suspended and not before.deleted
    state_changed = before is None or (before.suspended, before.deleted) != (suspended, False)
    active_before = _active_names(session, installation_id)
    store.upsert_installation(session, installation, suspended=suspended)
    if state_changed:  # repositories follow the installation only when its state changes
        store.set_installation_state(session, installation_id, suspended=suspended, deleted=False)
    if suspended:
        if not was_suspended:
            result.suspended.append(installation_id)
        result.removed += sorted(active_before.values())
        return
    if repositories is None:
        return
    listed = [repo for repo in repositories
              if isinstance(repo.get("id"), int) and isinstance(repo.get("full_name"), str)]
    for repo in listed:
        store.upsert_repository(session, repo, installation_id=installation_id, active=True)
    listed_ids = {int(repo["id"]) for repo in listed}
    gone = {repo_id: name for repo_id, name in _active_names(session, installation_id).items()
            if repo_id not in listed_ids}
    store.set_repositories_active(session, list(gone), active=False)
    result.added += sorted(str(repo["full_name"]) for repo in listed if int(repo["id"]) not in active_before)
    result.removed += sorted(gone.values())


def forget_unlisted(session: Session, listed: set[int], result: Discovery) -> None:
    """Mark installations GitHub no longer lists as deleted; their repositories go inactive."""
    for row in session.scalars(select(Installation).where(Installation.deleted.is_(False))):
        if row.id not in listed:
            result.removed += sorted(_active_names(session, row.id).values())
            store.set_installation_state(session, row.id, suspended=False, deleted=True)
            result.deleted.append(row.id)


def _store_installation(db: Database, installation: Mapping[str, Any],
                        repositories: Sequence[Mapping[str, Any]] | None, result: Discovery) -> None:
    with db.begin() as session:
        reconcile_installation(session, installation, repositories, result)


def _store_unlisted(db: Database, listed: set[int], result: Discovery) -> None:
    with db.begin() as session:
        forget_unlisted(session, listed, result)


async def discover_repositories(github: Any, db: Database) -> Discovery:
    """Reconcile the stored installations and repositories with what GitHub lists for the App.

    ``github`` is the App client factory (``list_installations()``,
    ``installation_repositories(id)``). A failure to list the installations raises and
    changes nothing; a failure to list one installation's repositories leaves that
    installation's repositories as they were.
    """
    installations = [item for item in await github.list_installations()
                     if isinstance(item, Mapping) and isinstance(item.get("id"), int)]
    result = Discovery()
    for installation in installations:
        repositories: list[Mapping[str, Any]] | None = None
        if installation.get("suspended_at") is None:
            try:
                repositories = await github.installation_repositories(int(installation["id"]))
            except GitHubError as exc:
                log.warning("listing an installation's repositories failed", installation_id=installation["id"],
                            error=f"{type(exc).__name__}: {exc}")
                result.failed.append(int(installation["id"]))
        await db.run(_store_installation, db, installation, repositories, result)
    await db.run(_store_unlisted, db, {int(item["id"]) for item in installations}, result)
    if result.changed:
        log.info("installations reconciled with GitHub", added=result.added, removed=result.removed,
                 suspended=result.suspended, deleted=result.deleted)
    return result
