"""GitHub as a projection of the database: labels, status comment, check runs, reactions, reviewers.

Every run transition bumps ``runs.updated_at`` in its own transaction; a run whose
``github_synced_at`` is older is *stale*. The reporter renders a stale run's current
state and brings GitHub in line with it, idempotently (the coordinator hashes what it
rendered and finds objects by marker), then records which ``updated_at`` GitHub shows.
Rendering from current state coalesces: ten quick transitions cost one edit. A crash
between a transition and its report loses nothing: the run stays stale until a reporter
(any worker or planner process, see :func:`report_forever`) catches up.

Which process changed the run does not matter: a cancel from the CLI or the dashboard, a
reconciler outcome, a webhook handler and a worker's own stage change all reach GitHub
the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from gidgethub.abc import GitHubAPI

from agentz_app.config import SANDBOX_WARNING, Settings
from agentz_app.domain import states
from agentz_app.domain.states import Status
from agentz_app.errors import AgentZError
from agentz_app.logs import get_logger
from agentz_app.permissions import Actor, check_actor
from agentz_app.store.db import Database
from agentz_app.store.models import Event, Run, now
from agentz_app.store.runs import ReportClaims, RunQueue, RunReads
from workers.coordinator import LABEL_NEEDS_HUMAN, LABEL_QUEUED, LABEL_RUNNING, Coordinator, content_digest, status_view

CLAIM_SECONDS = 120.0  # a reporter that dies holding a run frees it after this long
RETRY_SECONDS = 30.0  # after GitHub refused, leave the run alone this long
_LABELS_KEY = "labels"
# Statuses in which the issue carries the running and skip labels.
WORKING = frozenset({Status.DEVELOPING, Status.REVIEWING, Status.FIXING, Status.SUBMITTING, Status.WAITING_CHECKS,
                     Status.FIXING_CI})
# Who requested a run when no person did (``requested_by`` values that are not logins).
_LOGIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$")
_NOT_PEOPLE = frozenset({"cli", "scheduler", "operator", "reconciler", "github", "ci", "system", "queue"})

log = get_logger("agentz.reporter")
GitHubFor = Callable[[Run], Awaitable[Any]]


# Pure decisions -----------------------------------------------------------------


@dataclass(frozen=True)
class LabelChange:
    """Labels to add to and remove from the run's issue."""

    add: tuple[str, ...]
    remove: tuple[str, ...]


def wanted_labels(status: str, skip_labels: Sequence[str]) -> LabelChange:
    """The label change that shows ``status``: running/skip while working, needs-human when a person must act."""
    skip = tuple(skip_labels[:1])
    current = Status(status)
    if current in states.TERMINAL:
        add = (LABEL_NEEDS_HUMAN,) if current == Status.NEEDS_HUMAN else ()
        remove = (LABEL_RUNNING, LABEL_QUEUED, *skip) + (() if add else (LABEL_NEEDS_HUMAN,))
        return LabelChange(add, remove)
    if current in WORKING:
        return LabelChange((*skip, LABEL_RUNNING), (LABEL_QUEUED, LABEL_NEEDS_HUMAN))
    return LabelChange((), (LABEL_NEEDS_HUMAN,))


def reviewer_for(run: Run) -> str | None:
    """The person to ask for a review when the run's pull request turned green, or None."""
    login = (run.requested_by or "").strip()
    if run.status != Status.DONE or not run.pr_number or not _LOGIN.match(login):
        return None
    return None if login.lower() in _NOT_PEOPLE else login


def ending_reason(events: Sequence[Event], status: str) -> str | None:
    """Why the run reached ``status``: the reason recorded with the latest transition into it."""
    for event in reversed(events):
        if event.to_status == status and event.kind in ("transition", "adopted"):
            reason = event.payload.get("reason")
            return str(reason) if reason else None
    return None


def review_summary(events: Sequence[Event]) -> str | None:
    """The summary of the run's latest review."""
    for event in reversed(events):
        review = event.payload.get("review") if event.kind == "review" else None
        if isinstance(review, dict) and isinstance(review.get("summary"), str):
            return str(review["summary"])
    return None


def run_notes(settings: Settings, events: Sequence[Event]) -> list[str]:
    """Notes for the status comment: an unsandboxed host, refused network destinations, refused files."""
    notes = []
    if settings.agent_sandbox == "none":
        notes.append(f"⚠️ {SANDBOX_WARNING}.")
    blocked: dict[str, int] = {}
    refused: list[dict[str, Any]] = []
    for event in events:
        if event.kind == "agent_call":
            for destination, count in (event.payload.get("blocked") or {}).items():
                blocked[str(destination)] = blocked.get(str(destination), 0) + int(count)
        elif event.kind == "content_policy":
            refused = list(event.payload.get("violations") or [])
    if blocked:
        listed = ", ".join(f"`{d}` ({n})" for d, n in sorted(blocked.items()))
        notes.append(f"The agent sandbox refused {sum(blocked.values())} network request(s): {listed}. "
                     "Add a destination the setup needs to `AGENT_NETWORK_ALLOW`.")
    if refused:
        rows = "; ".join(f"`{v.get('path')}` ({v.get('rule')})" for v in refused[:20])
        notes.append(f"Content policy refused: {rows}.")
    return notes


# The reporter -------------------------------------------------------------------


class ReporterDeps(Protocol):
    """What a reporter needs from a process's pipeline dependencies."""

    @property
    def settings(self) -> Settings: ...
    @property
    def db(self) -> Database: ...
    @property
    def queue(self) -> RunQueue: ...
    @property
    def github(self) -> GitHubFor: ...


class Reporter:
    """Brings the GitHub view of runs in line with the database."""

    def __init__(self, settings: Settings, db: Database, reads: RunReads, reports: ReportClaims, github: GitHubFor,
                 *, clock: Callable[[], float] = now) -> None:
        self.settings = settings
        self.db = db
        self.reads = reads
        self.reports = reports
        self.github = github
        self.clock = clock

    @classmethod
    def from_deps(cls, deps: ReporterDeps) -> Reporter:
        """The reporter of a process's pipeline dependencies."""
        return cls(deps.settings, deps.db, deps.queue.reads, deps.queue.reports, deps.github)

    async def report(self, run_id: str, *, gh: GitHubAPI | None = None) -> bool:
        """Show the run's current state on GitHub now; False when another reporter holds it or GitHub refused.

        Whoever holds it renders the state it reads; a change after that read keeps the
        run stale, so it is shown at the next pass.
        """
        run = await self.db.run(self.reports.claim_report, run_id, seconds=CLAIM_SECONDS)
        if run is None:
            return False
        try:
            await self.project(gh if gh is not None else await self.github(run), run)
        except (AgentZError, OSError) as exc:
            log.warning("GitHub view not updated; will retry", run_id=run.id, status=run.status, error=str(exc))
            await self.db.run(self.reports.finish_report, run.id, shown=None, retry_after=RETRY_SECONDS)
            return False
        except BaseException:
            await asyncio.shield(self.db.run(self.reports.finish_report, run.id, shown=None))
            raise
        await self.db.run(self.reports.finish_report, run.id, shown=run.updated_at)
        return True

    async def report_stale(self, *, limit: int = 20) -> int:
        """Report runs whose GitHub view is stale and whose last change is older than the coalescing window."""
        quiet_since = self.clock() - self.settings.github_report_coalesce_seconds
        shown = 0
        for run in await self.db.run(self.reads.stale_on_github, quiet_since=quiet_since, limit=limit):
            with structlog_run(run.id):
                shown += await self.report(run.id)
        return shown

    async def project(self, gh: GitHubAPI, run: Run) -> None:
        """Acknowledge the trigger, edit the status comment, set labels, conclude checks, request a review."""
        coordinator = Coordinator(gh, self.db, self.settings)
        if run.trigger_ref:
            await coordinator.acknowledge(run, run.trigger_ref)
        events = await self.db.run(self.reads.events, run.id)
        reason = ending_reason(events, run.status) if run.status in states.TERMINAL else None
        view = status_view(run, review_summary=review_summary(events), notes=run_notes(self.settings, events),
                           reason=reason)
        await coordinator.status_comment(run, view)
        await self._labels(coordinator, run)
        if run.status == Status.CANCELLED:
            await coordinator.conclude_checks(run, "cancelled")
        reviewer = reviewer_for(run)
        if reviewer is not None and await self.db.run(coordinator.effect, run.id, "review_request") is None:
            await self._request_review(gh, coordinator, run, reviewer)

    async def _labels(self, coordinator: Coordinator, run: Run) -> None:
        change = wanted_labels(run.status, self.settings.skip_labels)
        wanted = content_digest((change.add, change.remove))
        if await self.db.run(coordinator.rendered_digest, run.id, _LABELS_KEY) == wanted:
            return
        await coordinator.change_labels(run.repo, run.issue_number, add=change.add, remove=change.remove)
        await self.db.run(coordinator.remember_digest, run.id, _LABELS_KEY, wanted)

    async def _request_review(self, gh: GitHubAPI, coordinator: Coordinator, run: Run, login: str) -> None:
        decision = await check_actor(gh, self.db, self.settings, run.repo, Actor.from_login(login))
        if decision.lookup_failed:
            return  # ask again at the next report
        if not decision.allowed:
            log.info("no review requested", run_id=run.id, user=login, reason=decision.reason)
            await self.db.run(coordinator.record_effect, run.id, "review_request", 0)
            return
        await coordinator.request_review(run, login)


def structlog_run(run_id: str) -> contextlib.AbstractContextManager[Any]:
    """Bind the run id to every log line inside."""
    return structlog.contextvars.bound_contextvars(run_id=run_id)


async def report_forever(reporter: Reporter, stop: asyncio.Event) -> None:
    """Report stale runs every ``GITHUB_REPORT_INTERVAL_SECONDS`` until ``stop`` is set; errors are logged."""
    interval = reporter.settings.github_report_interval_seconds
    while not stop.is_set():
        try:
            await reporter.report_stale()
        except Exception as exc:  # noqa: BLE001 - the reporting loop: a failed pass is logged and the next one runs
            log.error("reporting pass failed", error=str(exc))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
