"""The durable run queue: enqueue, atomic claims, leases with fencing, resource claims.

Every write made by a lease holder is conditioned on ``(run id, attempt)``: the
attempt number is a fencing token, so a zombie's late write changes nothing and
raises :class:`LeaseLost`. Every status change is one transaction that also
appends an :class:`Event` row. The same code serves SQLite (``BEGIN IMMEDIATE``)
and PostgreSQL (``FOR UPDATE SKIP LOCKED``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from agentz_app.store.db import Database
from agentz_app.store.models import Event, Run


@dataclass(frozen=True)
class Lease:
    """What a claimer holds: the run id, its fencing token and the owner string."""

    run_id: str
    attempt: int
    owner: str


def issue_resource(repo: str, number: int) -> str:
    return f"issue:{repo}#{number}"


def file_resource(repo: str, path: str) -> str:
    return f"file:{repo}:{path}"


def module_resource(repo: str, name: str) -> str:
    return f"module:{repo}:{name}"


class RunQueue:
    """Repository API over runs, claims and events."""

    def __init__(self, db: Database, *, lease_seconds: float = 60.0) -> None:
        self.db = db
        self.lease_seconds = lease_seconds

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
    ) -> tuple[Run, bool]:
        """Create a queued run holding the issue claim; returns (run, created).

        Idempotent: if a live run already holds the issue, that run is returned with
        ``created=False`` and nothing changes.
        """
        raise NotImplementedError

    def get(self, run_id: str) -> Run:
        """The run, or :class:`NotFound`."""
        raise NotImplementedError

    def live_run_for_issue(self, repo: str, issue_number: int) -> Run | None:
        raise NotImplementedError

    def list_runs(self, *, statuses: Collection[str] | None = None, limit: int = 200) -> list[Run]:
        raise NotImplementedError

    def claim(
        self,
        owner: str,
        *,
        statuses: Collection[str],
        target: str | None = None,
        per_repo_limit: int | None = None,
    ) -> tuple[Run, Lease] | None:
        """Atomically take the oldest unleased run in ``statuses``.

        Sets the lease, increments ``attempt`` and moves it to ``target`` (or keeps its
        status when None). Returns None when nothing is claimable.
        """
        raise NotImplementedError

    def heartbeat(self, lease: Lease) -> float:
        """Extend the lease; returns the new expiry or raises :class:`LeaseLost`."""
        raise NotImplementedError

    def transition(
        self,
        lease: Lease,
        target: str,
        *,
        stage: str | None = None,
        error: str | None = None,
        release: bool = False,
        event: dict[str, Any] | None = None,
        **fields: Any,
    ) -> Run:
        """Fenced status change + event row; ``release`` drops the lease (and for
        terminal statuses all claims). Raises LeaseLost or IllegalTransition."""
        raise NotImplementedError

    def update(self, lease: Lease, **fields: Any) -> Run:
        """Fenced update of run fields (plan, session ids, PR number, cost ...)."""
        raise NotImplementedError

    def add_cost(self, lease: Lease, cost_usd: float, tokens: int) -> Run:
        raise NotImplementedError

    def release(self, lease: Lease) -> None:
        """Drop the lease without a status change (fenced)."""
        raise NotImplementedError

    def set_status(self, run_id: str, target: str, *, reason: str, actor: str = "system",
                   **fields: Any) -> Run:
        """Unfenced status change for operators, webhooks and the reconciler.

        Bumps ``attempt`` so any current lease holder's next write raises LeaseLost,
        clears the lease, and releases claims on terminal statuses.
        """
        raise NotImplementedError

    def cancel(self, run_id: str, *, reason: str, actor: str = "operator") -> Run:
        raise NotImplementedError

    def claim_resources(self, lease: Lease, resources: Iterable[str]) -> list[str]:
        """Take file/module claims all-or-nothing; returns the conflicting resources
        (empty list on success). Re-claiming one's own resources is a no-op."""
        raise NotImplementedError

    def release_resources(self, run_id: str, *, keep_issue: bool = True) -> None:
        raise NotImplementedError

    def claims_of(self, run_id: str) -> list[str]:
        raise NotImplementedError

    def add_event(self, run_id: str | None, kind: str, **payload: Any) -> None:
        raise NotImplementedError

    def events(self, run_id: str) -> list[Event]:
        raise NotImplementedError

    def runs_waiting_on_sha(self, repo: str, head_sha: str) -> list[Run]:
        raise NotImplementedError

    def expired(self, now: float | None = None) -> list[Run]:
        """Runs in leased statuses whose lease expired (for the reconciler)."""
        raise NotImplementedError
