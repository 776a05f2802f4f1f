"""The reconciler: recover lost leases, complete merged runs, adopt foreign PRs, wake deferred runs.

:func:`reconcile_once` is pure database work (it never calls GitHub; PR facts come
from the ``pulls`` snapshot table kept fresh by webhooks and resync, PR authors'
permissions from ``actor_permissions``, resolved when the PR's webhook was processed). Every action
is one guarded status change that appends an event, so two reconcilers racing each
other, or a worker heartbeating at the same moment, never undo each other's work.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from agentz_app.config import Settings
from agentz_app.domain.states import LEASED, LIVE, Status, can_transition
from agentz_app.errors import IllegalTransition, LeaseLost
from agentz_app.logs import get_logger
from agentz_app.permissions import Actor, stored_decision
from agentz_app.store.db import Database
from agentz_app.store.models import Process, PullSnapshot, Run, now
from agentz_app.store.owners import owner_host, owner_is_dead
from agentz_app.store.retention import PruneReport, prune_if_due
from agentz_app.store.runs import Clock, RunQueue

_WORKING = frozenset({Status.DEVELOPING, Status.REVIEWING, Status.FIXING, Status.FIXING_CI})
# Statuses in which a lost attempt may have changed code that only a checkpoint preserves.
_DEVELOPMENT = _WORKING | {Status.SUBMITTING}
HOST_DEAD = "dead"  # the state a dead host's process rows are given


@dataclass
class ReconcileReport:
    """Run ids touched by one reconciler pass, by action."""

    requeued: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    needs_human: list[str] = field(default_factory=list)
    merged: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    undeferred: list[str] = field(default_factory=list)
    dead_hosts: list[str] = field(default_factory=list)  # host ids, not run ids

    @property
    def total(self) -> int:
        """How many actions the pass took."""
        return sum(len(ids) for ids in self.as_dict().values())

    def as_dict(self) -> dict[str, list[str]]:
        """The report as plain data (for ``--json`` and logs)."""
        return {f.name: list(getattr(self, f.name)) for f in fields(self)}

    def summary(self) -> str:
        """One line such as ``requeued=1 merged=2`` (or ``nothing to do``)."""
        parts = [f"{name}={len(ids)}" for name, ids in self.as_dict().items() if ids]
        return " ".join(parts) or "nothing to do"


@dataclass(frozen=True)
class Recovery:
    """What to do with a run whose lease is gone: a target status (None = only drop the lease)."""

    target: Status | None
    bucket: str
    reason: str
    fields: dict[str, Any] = field(default_factory=dict)


def plan_recovery(run: Run, *, cause: str, max_infra_attempts: int, pull: PullSnapshot | None,
                  progress_saved: bool = True) -> Recovery:
    """Decide, without I/O, how to recover a run whose lease expired or whose owner died.

    Development whose progress cannot be proven (``progress_saved`` is False: no checkpoint,
    or one older than the last reported progress) is quarantined as ``needs_human``: resuming
    it could silently drop or repeat work a human should look at first.
    """
    attempts = run.infra_attempts + 1
    counted: dict[str, Any] = {"infra_attempts": attempts}
    status = Status(run.status)
    if attempts >= max_infra_attempts:
        error = f"{cause}; gave up after {attempts} infrastructure attempts"
        return Recovery(Status.FAILED, "failed", error, {**counted, "error": error})
    if status in _DEVELOPMENT and not progress_saved:
        saved = "no checkpoint" if not run.checkpoint_sha else "its checkpoint is older than its last progress"
        error = f"quarantined: {cause} during {run.stage or status.value} and {saved}; check the branch and resume"
        return Recovery(Status.NEEDS_HUMAN, "needs_human", error, {**counted, "error": error})
    if status == Status.PLANNING:
        return Recovery(Status.QUEUED, "requeued", cause, counted)
    if status in _WORKING:
        if status == Status.FIXING_CI and run.pr_number is None:
            error = f"{cause}; fixing CI without a recorded pull request"
            return Recovery(Status.NEEDS_HUMAN, "needs_human", error, {**counted, "error": error})
        return Recovery(Status.READY, "resumed", cause, {**counted, "stage": run.stage or status.value})
    if status == Status.SUBMITTING:
        if run.pr_number is not None and pull is not None and pull.state == "closed" and not pull.merged:
            error = f"{cause}; pull request #{run.pr_number} was closed without merging"
            return Recovery(Status.NEEDS_HUMAN, "needs_human", error, {**counted, "error": error})
        return Recovery(Status.READY, "resumed", cause, {**counted, "stage": run.stage or status.value})
    if status in LEASED:  # a leased status added later that we do not know how to resume
        error = f"{cause}; cannot safely resume from {status}"
        return Recovery(Status.NEEDS_HUMAN, "needs_human", error, {**counted, "error": error})
    # A claim that kept its status (queued, ready ...): nothing progressed, drop the lease.
    return Recovery(None, "released", cause, counted)


def find_dead_hosts(
    leased: Sequence[Run], beats: dict[str, float], *, at: float, stale_after: float, own_host: str
) -> dict[str, list[Run]]:
    """Hosts to declare dead, with their leased runs (pure).

    A host is dead when every lease it holds has expired and every one of its process
    rows (the supervisor's heartbeats) is older than ``stale_after`` seconds, or it has
    none. The reconciler's own host is alive by definition; a host with one lease still
    current is alive.
    """
    by_host: dict[str, list[Run]] = {}
    for run in leased:
        host = owner_host(run.lease_owner or "")
        if host is not None and host != own_host:
            by_host.setdefault(host, []).append(run)
    dead: dict[str, list[Run]] = {}
    for host, runs in sorted(by_host.items()):
        if any((run.lease_expires_at or 0.0) >= at for run in runs):
            continue
        if beats.get(host, float("-inf")) >= at - stale_after:
            continue
        dead[host] = runs
    return dead


def links_issue(pull: PullSnapshot, run: Run) -> bool:
    """True when ``pull`` is someone else's open PR that links the run's issue."""
    return (
        pull.repo == run.repo
        and pull.state == "open"
        and not pull.merged
        and run.issue_number in (pull.linked_issues or [])
        and pull.head_ref != run.branch
    )


def _runs_with_merged_pulls(db: Database) -> list[tuple[Run, PullSnapshot]]:
    """Runs that may still become ``merged`` joined with a merged PR matching their number or branch."""
    mergeable = [s for s in Status if can_transition(s, Status.MERGED)]
    with db.read() as session:
        rows = session.execute(
            select(Run, PullSnapshot)
            .join(
                PullSnapshot,
                and_(
                    PullSnapshot.repo == Run.repo,
                    or_(PullSnapshot.number == Run.pr_number, PullSnapshot.head_ref == Run.branch),
                ),
            )
            .where(Run.status.in_(mergeable), PullSnapshot.merged.is_(True))
            .order_by(Run.created_at)
        ).all()
    seen: set[str] = set()
    found: list[tuple[Run, PullSnapshot]] = []
    for run, pull in rows:
        if run.id not in seen:
            seen.add(run.id)
            found.append((run, pull))
    return found


def _pull(db: Database, repo: str, number: int | None) -> PullSnapshot | None:
    if number is None:
        return None
    with db.read() as session:
        return session.scalars(
            select(PullSnapshot).where(PullSnapshot.repo == repo, PullSnapshot.number == number)
        ).first()


class _Pass:
    """One reconciler pass; holds the queue, the clock and the report being built."""

    def __init__(self, db: Database, settings: Settings, clock: Clock, is_dead: Callable[[str], bool]) -> None:
        self.db = db
        self.settings = settings
        self.queue = RunQueue(db, lease_seconds=settings.lease_seconds, clock=clock)
        self.clock = clock
        self.is_dead = is_dead
        self.report = ReconcileReport()
        self.log = get_logger("agentz.reconciler")

    def _unchanged(self, seen: Run) -> Callable[[Run], bool]:
        def guard(current: Run) -> bool:
            return (current.attempt, current.status, current.lease_expires_at) == (
                seen.attempt, seen.status, seen.lease_expires_at
            )

        return guard

    def complete_merged(self) -> None:
        """Runs whose pull request was merged become ``merged``."""
        for run, pull in _runs_with_merged_pulls(self.db):
            try:
                self.queue.moves.set_status(
                    run.id, Status.MERGED, reason=f"pull request #{pull.number} merged", actor="reconciler",
                    guard=self._unchanged(run), pr_number=pull.number,
                )
            except (LeaseLost, IllegalTransition):
                continue
            self.report.merged.append(run.id)

    def handle_foreign_pulls(self) -> None:
        """Adopt, or cancel for, open PRs by someone else that link a live run's issue.

        Only pull requests whose author may steer count; anyone else's are left alone.
        """
        runs = [r for r in self.queue.reads.list_runs(statuses=LIVE, limit=100_000) if r.pr_number is None]
        if not runs:
            return
        with self.db.read() as session:
            candidates = session.scalars(
                select(PullSnapshot).where(
                    PullSnapshot.repo.in_({r.repo for r in runs}), PullSnapshot.state == "open",
                    PullSnapshot.merged.is_(False),
                ).order_by(PullSnapshot.number)
            ).all()
            linking = [p for p in candidates if any(links_issue(p, r) for r in runs)]
            pulls = [p for p in linking if self._author_may_steer(session, p)]
        for run in runs:
            pull = next((p for p in pulls if links_issue(p, run)), None)
            if pull is None:
                continue
            reason = f"pull request #{pull.number} by {pull.author or 'someone else'} links the issue"
            try:
                if self.settings.foreign_pr_policy == "adopt":
                    self.queue.moves.adopt_pr(run.id, pull.number, head_sha=pull.head_sha or None,
                                              branch=pull.head_ref or None, reason=reason)
                    self.report.adopted.append(run.id)
                else:
                    self.queue.moves.set_status(run.id, Status.CANCELLED, reason=reason, actor="reconciler",
                                                guard=self._unchanged(run))
                    self.report.cancelled.append(run.id)
            except (LeaseLost, IllegalTransition):
                continue

    def _author_may_steer(self, session: Session, pull: PullSnapshot) -> bool:
        # The author's permission was stored when the pull request's webhook was processed.
        decision = stored_decision(session, self.settings, pull.repo, Actor.from_login(pull.author or ""))
        if not decision.allowed:
            self.log.debug("pull request not adopted", repo=pull.repo, number=pull.number, author=pull.author,
                           reason=decision.reason)
        return decision.allowed

    def declare_dead_hosts(self) -> dict[str, str]:
        """Declare hosts dead (see :func:`find_dead_hosts`); returns their runs' ids mapped to the host.

        Each dead host gets one ``host_dead`` event and its process rows the state ``dead``;
        its runs are then recovered together by :meth:`recover_leases`.
        """
        moment = self.clock()
        with self.db.read() as session:
            beats = {str(host): float(beat) for host, beat in session.execute(
                select(Process.host, func.max(Process.heartbeat_at)).group_by(Process.host)).all()}
        dead = find_dead_hosts(self.queue.reads.leased(), beats, at=moment, stale_after=self.settings.lease_seconds,
                               own_host=self.settings.host_id)
        runs_of: dict[str, str] = {}
        for host, runs in dead.items():
            with self.db.begin() as session:
                session.execute(update(Process).where(Process.host == host).values(state=HOST_DEAD))
            self.queue.moves.add_event(None, "host_dead", host=host, runs=sorted(r.id for r in runs),
                                       last_heartbeat=beats.get(host), actor="reconciler", by=self.settings.host_id)
            self.log.warning("host declared dead", host=host, runs=len(runs))
            self.report.dead_hosts.append(host)
            runs_of.update({run.id: host for run in runs})
        return runs_of

    def recover_leases(self, dead_hosts: dict[str, str] | None = None) -> None:
        """Recover runs whose lease expired, whose owner died on this host or whose host is dead."""
        moment = self.clock()
        on_dead_host = dead_hosts or {}
        expired = {r.id: r for r in self.queue.reads.expired(moment)}
        dead = {
            r.id: r for r in self.queue.reads.leased()
            if r.id not in expired and r.lease_owner is not None
            and (r.id in on_dead_host or self.is_dead(r.lease_owner))
        }
        for run in [*expired.values(), *dead.values()]:
            if run.id in on_dead_host:
                cause = f"host {on_dead_host[run.id]} of lease owner {run.lease_owner} is dead"
            elif run.id in dead:
                cause = f"lease owner {run.lease_owner} is no longer running"
            elif run.lease_owner is None:
                cause = f"nobody holds the lease of a {run.status} run"
            else:
                cause = f"lease of {run.lease_owner} expired"
            pull = _pull(self.db, run.repo, run.pr_number)
            if run.status == Status.SUBMITTING and pull is not None and pull.merged:
                self._finish_merged_submission(run, pull)
                continue
            recovery = plan_recovery(run, cause=cause, max_infra_attempts=self.settings.max_infra_attempts,
                                     pull=pull, progress_saved=self.queue.reads.progress_is_saved(run.id))
            self._apply(run, recovery)

    def _apply(self, run: Run, recovery: Recovery) -> None:
        guard = self._unchanged(run)
        try:
            if recovery.target is None:
                self.queue.leases.revoke_lease(run.id, reason=recovery.reason, guard=guard, **recovery.fields)
            else:
                self.queue.moves.set_status(
                    run.id, recovery.target, reason=recovery.reason, actor="reconciler", guard=guard,
                    event={"checkpoint_sha": run.checkpoint_sha, "stage": recovery.fields.get("stage")},
                    **recovery.fields,
                )
        except (LeaseLost, IllegalTransition):
            return  # the run moved on since we looked; the next pass sees the new state
        getattr(self.report, recovery.bucket).append(run.id)
        self.log.info("run recovered", run_id=run.id, action=recovery.bucket, reason=recovery.reason)

    def _finish_merged_submission(self, run: Run, pull: PullSnapshot) -> None:
        reason = f"pull request #{pull.number} merged while submitting"
        try:
            done = self.queue.moves.set_status(run.id, Status.DONE, reason=reason, actor="reconciler",
                                               guard=self._unchanged(run))
            self.queue.moves.set_status(run.id, Status.MERGED, reason=reason, actor="reconciler",
                                        expected_attempt=done.attempt)
        except (LeaseLost, IllegalTransition):
            return
        self.report.merged.append(run.id)

    def wake_deferred(self) -> None:
        """Deferred runs whose conflicting claims are free become claimable."""
        self.report.undeferred.extend(self.queue.resources.wake_deferred())


def reconcile_once(
    db: Database,
    settings: Settings,
    *,
    clock: Clock = now,
    is_dead: Callable[[str], bool] | None = None,
) -> ReconcileReport:
    """Run one reconciler pass over the database and report what changed.

    ``is_dead`` tells whether a lease owner's process is gone (default: checked in
    ``/proc`` for owners on this ``HOST_ID``).
    """
    work = _Pass(db, settings, clock, is_dead or functools.partial(owner_is_dead, host=settings.host_id))
    work.complete_merged()
    work.handle_foreign_pulls()
    work.recover_leases(work.declare_dead_hosts())
    work.wake_deferred()
    return work.report


def run_reconciler(
    settings: Settings,
    *,
    db: Database,
    stop: threading.Event | None = None,
    on_report: Callable[[ReconcileReport], None] | None = None,
    on_prune: Callable[[PruneReport], None] | None = None,
    clock: Clock = now,
) -> None:
    """Reconcile every RECONCILE_INTERVAL_SECONDS until ``stop`` is set; errors are logged, not fatal.

    After each pass, prune old records once a day (the day's prune is claimed in the
    database, so several reconcilers and restarts still prune once). The caller owns ``db``.
    """
    database = db
    stopping = stop or threading.Event()
    log = get_logger("agentz.reconciler")
    while not stopping.is_set():
        try:
            report = reconcile_once(database, settings, clock=clock)
        except Exception as exc:  # noqa: BLE001 - the reconciler loop: a failed pass is logged and the next one runs
            log.error("reconcile pass failed", error=str(exc))
        else:
            if report.total:
                log.info("reconciled", summary=report.summary())
            if on_report is not None:
                on_report(report)
        try:
            pruned = prune_if_due(database, settings, clock=clock)
        except Exception as exc:  # noqa: BLE001 - the reconciler loop: a failed prune is logged and retried when next due
            log.error("prune failed", error=str(exc))
        else:
            if pruned is not None and on_prune is not None:
                on_prune(pruned)
        stopping.wait(settings.reconcile_interval_seconds)
