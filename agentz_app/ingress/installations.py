"""Track where the App is installed: installations and their repositories.

A deleted or suspended installation makes its repositories inactive, so nothing is
scheduled where the App can no longer act; unsuspending brings them back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gidgethub import routing, sansio
from sqlalchemy.orm import Session

from agentz_app.config import Settings
from agentz_app.ingress.snapshots import PayloadError, section
from agentz_app.store import snapshots as store
from agentz_app.store.db import Database

router = routing.Router()


def _id(obj: Mapping[str, Any]) -> int:
    value = obj.get("id")
    if not isinstance(value, int) or isinstance(value, bool):
        raise PayloadError("payload installation has no id")
    return value


def _repositories(data: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    items = data.get(key)
    if not isinstance(items, list):
        return []
    return [item for item in items if isinstance(item, Mapping) and isinstance(item.get("id"), int)]


def _add(session: Session, repositories: list[Mapping[str, Any]], installation_id: int) -> None:
    for repository in repositories:
        if isinstance(repository.get("full_name"), str):
            store.upsert_repository(session, repository, installation_id=installation_id)


@router.register("installation")
async def on_installation(event: sansio.Event, gh: Any, *, db: Database, settings: Settings, **_: Any) -> None:
    """Record an installation and its repositories; deactivate them when it goes away."""
    data = event.data
    action = data.get("action")
    installation = section(data, "installation")
    installation_id = _id(installation)
    with db.begin() as session:
        if action == "deleted":
            store.upsert_installation(session, installation, suspended=False, deleted=True)
            _add(session, _repositories(data, "repositories"), installation_id)
            store.set_installation_state(session, installation_id, suspended=False, deleted=True)
        elif action == "suspend":
            store.upsert_installation(session, installation, suspended=True)
            store.set_installation_state(session, installation_id, suspended=True, deleted=False)
        else:  # created, unsuspend, new_permissions_accepted
            store.upsert_installation(session, installation, suspended=False)
            _add(session, _repositories(data, "repositories"), installation_id)
            store.set_installation_state(session, installation_id, suspended=False, deleted=False)


@router.register("installation_repositories")
async def on_installation_repositories(
    event: sansio.Event, gh: Any, *, db: Database, settings: Settings, **_: Any
) -> None:
    """Follow repositories being added to or removed from an installation."""
    data = event.data
    installation = section(data, "installation")
    installation_id = _id(installation)
    with db.begin() as session:
        store.upsert_installation(session, installation)
        _add(session, _repositories(data, "repositories_added"), installation_id)
        removed = _repositories(data, "repositories_removed")
        _add(session, removed, installation_id)
        store.set_repositories_active(session, [int(repo["id"]) for repo in removed], active=False)
