"""Enqueueing runs: one issue, or many of one repository in bulk inserts."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from agentz_app.domain.states import LIVE, Status
from agentz_app.errors import StoreError
from agentz_app.store.db import Database
from agentz_app.store.models import Claim, Event, Run, now
from agentz_app.store.queue_core import RETRIES, Clock, new_run_id, record_event, take_issue_claim
from agentz_app.store.resources import issue_resource

_REPO_RE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
MODES = frozenset({"full", "plan_only"})


class Intake:
    """Create queued runs holding their issue claims."""

    def __init__(self, db: Database, *, clock: Clock = now) -> None:
        self.db = db
        self.clock = clock

    def _enqueue_in(
        self,
        session: Session,
        repo: str,
        issue_number: int,
        *,
        installation_id: int | None,
        title: str,
        mode: str,
        force: bool,
        requested_by: str | None,
        reason: str,
        issue_updated_at: str = "",
        trigger_ref: str | None = None,
    ) -> tuple[Run, bool]:
        live = session.scalars(
            select(Run)
            .where(Run.repo == repo, Run.issue_number == issue_number, Run.status.in_(LIVE))
            .order_by(Run.created_at)
            .limit(1)
        ).first()
        if live is not None:
            return live, False
        stamp = self.clock()
        run = Run(
            id=new_run_id(), repo=repo, installation_id=installation_id, issue_number=issue_number, title=title,
            status=Status.QUEUED, mode=mode, force=force, requested_by=requested_by, attempt=0, infra_attempts=0,
            created_at=stamp, updated_at=stamp, cost_usd=0.0, tokens=0, review_round=0, ci_round=0,
            trigger_ref=trigger_ref,
        )
        session.add(run)
        session.flush()
        take_issue_claim(session, run, clock=self.clock)
        seen = {"issue_updated_at": issue_updated_at} if issue_updated_at else {}
        record_event(
            session, self.clock(), run.id, "enqueued", to_status=Status.QUEUED,
            requested_by=requested_by, reason=reason, mode=mode, force=force, **seen,
        )
        session.flush()
        return run, True

    @staticmethod
    def _validate_enqueue(repo: str, issue_number: int, mode: str) -> None:
        if not _REPO_RE.match(repo):
            raise StoreError(f"repository {repo!r} must look like owner/name")
        if issue_number < 1:
            raise StoreError(f"issue number must be positive, got {issue_number}")
        if mode not in MODES:
            raise StoreError(f"mode must be one of {', '.join(sorted(MODES))}, got {mode!r}")

    def enqueue_in(
        self,
        session: Session,
        repo: str,
        issue_number: int,
        *,
        installation_id: int | None = None,
        title: str = "",
        mode: str = "full",
        force: bool = False,
        requested_by: str | None = None,
        reason: str = "",
        issue_updated_at: str = "",
        trigger_ref: str | None = None,
    ) -> tuple[Run, bool]:
        """:meth:`enqueue` inside the caller's transaction (a savepoint per attempt, so a lost race
        rolls back only this enqueue before it re-reads)."""
        self._validate_enqueue(repo, issue_number, mode)
        for _ in range(RETRIES):
            try:
                with session.begin_nested():
                    return self._enqueue_in(
                        session, repo, issue_number, installation_id=installation_id, title=title, mode=mode,
                        force=force, requested_by=requested_by, reason=reason, issue_updated_at=issue_updated_at,
                        trigger_ref=trigger_ref,
                    )
            except IntegrityError:
                continue  # a concurrent enqueue took the issue claim first; re-read
        raise StoreError(f"could not enqueue {repo}#{issue_number}: concurrent updates")

    def enqueue(
        self,
        repo: str,
        issue_number: int,
        *,
        installation_id: int | None = None,
        title: str = "",
        mode: str = "full",
        force: bool = False,
        requested_by: str | None = None,
        reason: str = "",
        issue_updated_at: str = "",
        trigger_ref: str | None = None,
    ) -> tuple[Run, bool]:
        """Create a queued run holding the issue claim; returns (run, created).

        Idempotent: if a live run already holds the issue, that run is returned with
        ``created=False`` and nothing changes. ``issue_updated_at`` (GitHub's time of
        the issue state that asked for the run) is kept in the ``enqueued`` event, so a
        request delivered late can be told from a new one (:meth:`.RunReads.requested_since`).
        ``trigger_ref`` names what GitHub acknowledges (``issue`` or ``comment:<id>``).
        """
        with self.db.begin() as session:
            return self.enqueue_in(
                session, repo, issue_number, installation_id=installation_id, title=title, mode=mode, force=force,
                requested_by=requested_by, reason=reason, issue_updated_at=issue_updated_at, trigger_ref=trigger_ref,
            )

    def enqueue_many(
        self, repo: str, issue_numbers: Iterable[int], *, reason: str = "", **options: Any
    ) -> list[tuple[Run, bool]]:
        """Enqueue several issues of one repository in a single transaction with bulk inserts.

        Same result as calling :meth:`enqueue` for each number (duplicates in the
        input and issues with a live run come back with ``created=False``).
        """
        numbers = list(dict.fromkeys(issue_numbers))
        mode = str(options.get("mode", "full"))
        for number in numbers:
            self._validate_enqueue(repo, number, mode)
        if not numbers:
            return []
        stamp = self.clock()
        with self.db.begin() as session:
            live = {
                run.issue_number: run
                for run in session.scalars(
                    select(Run).where(Run.repo == repo, Run.issue_number.in_(numbers), Run.status.in_(LIVE))
                ).all()
            }
            fresh = [n for n in numbers if n not in live]
            # Issue claims left behind by runs that are no longer live are stale.
            session.execute(
                delete(Claim).where(Claim.resource.in_([issue_resource(repo, n) for n in fresh]))
            )
            ids = {n: new_run_id() for n in fresh}
            common = {
                "repo": repo, "installation_id": options.get("installation_id"), "title": str(options.get("title", "")),
                "status": Status.QUEUED, "mode": mode, "force": bool(options.get("force", False)),
                "requested_by": options.get("requested_by"), "attempt": 0, "infra_attempts": 0,
                "created_at": stamp, "updated_at": stamp, "cost_usd": 0.0, "tokens": 0, "review_round": 0,
                "ci_round": 0,
            }
            if fresh:
                session.execute(insert(Run), [{**common, "id": ids[n], "issue_number": n} for n in fresh])
                session.execute(insert(Claim), [
                    {"resource": issue_resource(repo, n), "run_id": ids[n], "kind": "issue", "claimed_at": stamp}
                    for n in fresh
                ])
                payload = {k: v for k, v in {"requested_by": options.get("requested_by"), "reason": reason,
                                             "mode": mode, "force": common["force"]}.items() if v is not None}
                session.execute(insert(Event), [
                    {"run_id": ids[n], "kind": "enqueued", "from_status": None, "to_status": Status.QUEUED,
                     "payload": payload, "created_at": stamp}
                    for n in fresh
                ])
            created = {
                run.issue_number: run
                for run in session.scalars(select(Run).where(Run.id.in_(list(ids.values())))).all()
            }
        return [(live[n], False) if n in live else (created[n], True) for n in numbers]
