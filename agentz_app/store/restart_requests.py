"""Operators' requests that a supervisor restart one of its children (``restart_requests``)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select

from agentz_app.store.db import Database
from agentz_app.store.models import RestartRequest, now


def request_restart(db: Database, name: str, *, host: str, actor: str = "operator") -> None:
    """Ask the supervisor running ``name`` on ``host`` to restart it (works from any process and host)."""
    stamp = now()
    with db.begin() as session:
        row = session.get(RestartRequest, (host, name))
        if row is None:
            session.add(RestartRequest(host=host, name=name, requested_at=stamp, actor=actor))
        else:
            row.requested_at, row.actor = stamp, actor


def take_restart_requests(db: Database, host: str, names: Iterable[str]) -> list[str]:
    """Remove and return the pending restart requests for ``names`` on ``host``."""
    with db.begin() as session:
        rows = list(session.scalars(select(RestartRequest).where(RestartRequest.host == host,
                                                                 RestartRequest.name.in_(list(names)))))
        for row in rows:
            session.delete(row)
        return [row.name for row in rows]


def pending_restarts(db: Database) -> list[tuple[str, str]]:
    """Every pending request as ``(host, name)``."""
    with db.read() as session:
        return [(row.host, row.name) for row in
                session.scalars(select(RestartRequest).order_by(RestartRequest.host, RestartRequest.name))]
