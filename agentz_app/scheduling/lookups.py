"""Look up referenced issues that no snapshot holds, so a dependency is never unknown forever.

An issue may depend on one closed before the App was installed, or on one in another
repository. The scheduler asks GitHub about such an issue (``GET /repos/{owner}/{repo}/issues/{n}``,
ETag-cached by the client) with the installation that can read it and remembers the
answer in ``dependency_lookups``: its state, or why the App cannot read it. Answers are
asked again after ``RESYNC_INTERVAL_SECONDS``, from the periodic resync, which marks the
dependent repositories dirty when a state changed.

Only issues that passed every other gate cause look-ups, at most
:data:`MAX_LOOKUPS_PER_PASS` per pass, and only for well-formed repository names: a
hostile issue cannot make the App send requests anywhere but to one issue's URL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from gidgethub.abc import GitHubAPI
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from agentz_app.domain.dependencies import IssueRef
from agentz_app.errors import GitHubError
from agentz_app.logs import get_logger
from agentz_app.store.db import Database
from agentz_app.store.models import DependencyLookup, Repository, now
from agentz_app.store.scheduler_state import mark_dirty

log = get_logger(__name__)

MAX_LOOKUPS_PER_PASS = 50
MAX_REFRESHES_PER_RESYNC = 200
# GitHub's rules: an owner is letters, digits and inner hyphens; a repository name adds . and _.
_OWNER = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
# Answers that say the App cannot see the issue (as opposed to GitHub failing right now).
_UNREADABLE = {401: "the App may not read it", 403: "the App may not read it",
               404: "not found or not readable by the App", 410: "deleted"}


@dataclass(frozen=True)
class Known:
    """What is known about a referenced issue: its state, or why it cannot be read."""

    state: str | None
    error: str | None
    checked_at: float


class AppClients(Protocol):
    """The App's client factory as the scheduler uses it: one client per installation."""

    def client(self, installation_id: int) -> GitHubAPI:
        """A client acting as ``installation_id``."""
        ...


def fetchable(ref: IssueRef) -> bool:
    """True when ``ref`` names a repository GitHub could have (no ``..``, no odd characters)."""
    owner, _, name = ref.repo.partition("/")
    return bool(_OWNER.match(owner)) and bool(_NAME.match(name)) and name not in (".", "..")


def stored_lookups(session: Session, refs: Iterable[IssueRef]) -> dict[IssueRef, Known]:
    """The remembered answers for ``refs``."""
    wanted = set(refs)
    known: dict[IssueRef, Known] = {}
    for repo in {ref.repo for ref in wanted}:
        numbers = [ref.number for ref in wanted if ref.repo == repo]
        for row in session.scalars(
            select(DependencyLookup).where(DependencyLookup.repo == repo, DependencyLookup.number.in_(numbers))
        ):
            known[IssueRef(row.repo, row.number)] = Known(row.state, row.error, row.checked_at)
    return known


def installation_for(session: Session, repo: str, fallback: int | None) -> int | None:
    """The installation that can read ``repo``: its own when the App is installed there, else ``fallback``."""
    own = session.scalar(
        select(Repository.installation_id).where(
            func.lower(Repository.full_name) == repo.lower(), Repository.active.is_(True)
        )
    )
    return int(own) if own is not None else fallback


async def fetch_state(gh: GitHubAPI, ref: IssueRef) -> Known:
    """Ask GitHub for one issue's state; an answer that it cannot be read is a result, other errors raise."""
    if not fetchable(ref):
        return Known(None, "not a GitHub repository name", now())
    try:
        data = await gh.getitem(f"/repos/{ref.repo}/issues/{ref.number}")
    except GitHubError as exc:
        reason = _UNREADABLE.get(exc.status_code)
        if reason is None:
            raise
        return Known(None, f"{reason} (HTTP {exc.status_code})", now())
    state = data.get("state") if isinstance(data, Mapping) else None
    if state not in ("open", "closed"):
        return Known(None, "GitHub's answer has no state", now())
    return Known(str(state), None, now())


def remember(session: Session, ref: IssueRef, known: Known, *, needed_by: str | None = None) -> bool:
    """Store an answer; True when the state or the error changed."""
    row = session.get(DependencyLookup, (ref.repo, ref.number))
    if row is None:
        session.add(DependencyLookup(repo=ref.repo, number=ref.number, state=known.state, error=known.error,
                                     needed_by=[needed_by] if needed_by else [], checked_at=known.checked_at))
        return True
    changed = (row.state, row.error) != (known.state, known.error)
    row.state, row.error, row.checked_at = known.state, known.error, known.checked_at
    if needed_by and needed_by not in (row.needed_by or []):
        row.needed_by = [*(row.needed_by or []), needed_by]
    return changed


def _installation_for(db: Database, repo: str, fallback: int | None) -> int | None:
    with db.read() as session:
        return installation_for(session, repo, fallback)


def _remember(db: Database, ref: IssueRef, known: Known, *, needed_by: str) -> None:
    with db.begin() as session:
        remember(session, ref, known, needed_by=needed_by)


async def look_up(github: AppClients, db: Database, refs: Iterable[IssueRef], *, needed_by: str,
                  installation_id: int | None) -> dict[IssueRef, Known]:
    """Fetch and store up to MAX_LOOKUPS_PER_PASS referenced issues; failures leave them unknown."""
    answers: dict[IssueRef, Known] = {}
    for ref in sorted(set(refs))[:MAX_LOOKUPS_PER_PASS]:
        installation = await db.run(_installation_for, db, ref.repo, installation_id)
        if installation is None:
            continue
        try:
            known = await fetch_state(github.client(installation), ref)
        except GitHubError as exc:  # GitHub down or rate limited: ask again next pass
            log.warning("dependency look-up failed", dependency=str(ref), error=f"{type(exc).__name__}: {exc}")
            continue
        await db.run(_remember, db, ref, known, needed_by=needed_by)
        answers[ref] = known
    return answers


def _stale_lookups(db: Database, older_than: float) -> list[tuple[IssueRef, list[str]]]:
    with db.read() as session:
        return [
            (IssueRef(row.repo, row.number), list(row.needed_by or []))
            for row in session.scalars(
                select(DependencyLookup).where(DependencyLookup.checked_at < older_than)
                .order_by(DependencyLookup.checked_at).limit(MAX_REFRESHES_PER_RESYNC)
            )
        ]


def _installation_for_dependents(db: Database, ref: IssueRef, needed_by: list[str]) -> int | None:
    with db.read() as session:
        fallback = next((session.scalar(select(Repository.installation_id).where(Repository.full_name == repo))
                         for repo in needed_by), None)
        return installation_for(session, ref.repo, fallback)


def _remember_and_mark_dependents(db: Database, ref: IssueRef, known: Known, needed_by: list[str]) -> int:
    """Store an answer; on a change mark every dependent repository dirty and return 1 (else 0)."""
    with db.begin() as session:
        if not remember(session, ref, known):
            return 0
        for repo in needed_by:
            mark_dirty(session, repo, reason=f"dependency {ref} changed")
        return 1


async def refresh_lookups(github: AppClients, db: Database, *, older_than: float) -> int:
    """Ask again about remembered issues checked before ``older_than``; mark their dependents dirty on change.

    Returns how many answers changed.
    """
    rows = await db.run(_stale_lookups, db, older_than)
    changed = 0
    for ref, needed_by in rows:
        installation = await db.run(_installation_for_dependents, db, ref, needed_by)
        if installation is None:
            continue
        try:
            known = await fetch_state(github.client(installation), ref)
        except GitHubError as exc:
            log.warning("dependency refresh failed", dependency=str(ref), error=f"{type(exc).__name__}: {exc}")
            continue
        changed += await db.run(_remember_and_mark_dependents, db, ref, known, needed_by)
    return changed
