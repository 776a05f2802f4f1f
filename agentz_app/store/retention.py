"""Retention: find what has outlived its configured age, then delete it in small batches.

What is kept:

- deliveries: pending ones always; processed or dead ones for RETAIN_DELIVERIES_DAYS after
  they were processed or died;
- events: a run's history until it has been finished (terminal) for RETAIN_EVENTS_DAYS;
  events of no run (commands and trigger labels anyone can cause, scheduler rankings)
  for RETAIN_EVENTS_DAYS;
- files under STATE_DIR (:mod:`agentz_app.store.retention_files`): run logs for
  RETAIN_RUN_LOGS_DAYS after the run finished, agent homes until unused for
  RETAIN_AGENT_HOMES_DAYS (never a live run's), mirrors while their repository is installed
  or a live run uses it.

The decisions (:func:`cutoffs`, :func:`prune_is_due`, the ``*_due`` predicates) take the
current time as an argument; the shell (:func:`prune`) reads the clock once. Rows go
in batches of :data:`BATCH_SIZE`, one short transaction each, so a large table is never
locked for long. :func:`prune_if_due` lets only one of several reconcilers prune per
day: the day's prune is claimed in the ``prune_markers`` table before anything is deleted, so a
process killed mid-prune does not make another one start over the same day (pruning
is idempotent; tomorrow's prune finishes the job).
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, LargeBinary, Text, and_, cast, delete, func, or_, select

from agentz_app.config import Settings
from agentz_app.domain.states import LIVE, TERMINAL
from agentz_app.logs import get_logger
from agentz_app.store import retention_files as files
from agentz_app.store.db import Database
from agentz_app.store.models import (
    CommandExecution,
    Delivery,
    Event,
    Installation,
    RefusalReply,
    Repository,
    Run,
    now,
)
from agentz_app.store.prune_markers import claim_marker, finish_marker
from agentz_app.store.retention_files import Removed, RunFacts

DAY_SECONDS = 86400.0
BATCH_SIZE = 1000
DATABASE_KEY = "retention:database"
FILES_KEY_PREFIX = "retention:files:"

Clock = Callable[[], float]

log = get_logger("agentz.retention")


@dataclass(frozen=True)
class RetentionPolicy:
    """Retention ages in days."""

    deliveries_days: int = 14
    events_days: int = 90
    run_logs_days: int = 30
    agent_homes_days: int = 14

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        return cls(settings.retain_deliveries_days, settings.retain_events_days, settings.retain_run_logs_days,
                   settings.retain_agent_homes_days)


@dataclass(frozen=True)
class Cutoffs:
    """Epoch seconds before which each kind of record is due for deletion."""

    deliveries: float
    events: float
    run_logs: float
    agent_homes: float


@dataclass
class PruneReport:
    """What one prune removed (or, in a dry run, would remove)."""

    dry_run: bool = False
    deliveries: Removed = field(default_factory=Removed)
    events: Removed = field(default_factory=Removed)
    run_logs: Removed = field(default_factory=Removed)
    agent_homes: Removed = field(default_factory=Removed)
    mirrors: Removed = field(default_factory=Removed)
    command_records: Removed = field(default_factory=Removed)

    def parts(self) -> dict[str, Removed]:
        """Each kind of record and what went."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "dry_run"}

    def as_dict(self) -> dict[str, Any]:
        """The report as plain data (for ``--json``, logs and the ``prune_markers`` table)."""
        return {"dry_run": self.dry_run,
                **{name: {"count": part.count, "bytes": part.bytes} for name, part in self.parts().items()}}

    def summary(self) -> str:
        """One line such as ``removed deliveries=120 (1.2 MB) events=0 …``."""
        verb = "would remove" if self.dry_run else "removed"
        items = " ".join(f"{name.replace('_', ' ')}={part.count} ({format_bytes(part.bytes)})"
                         for name, part in self.parts().items())
        return f"{verb} {items}"


def format_bytes(size: int) -> str:
    """``512 B``, ``1.5 kB``, ``12.0 MB``, ``3.2 GB`` (powers of 1000)."""
    if size < 1000:
        return f"{size} B"
    value, unit = size / 1000, "kB"
    for bigger in ("MB", "GB"):
        if value < 1000:
            break
        value, unit = value / 1000, bigger
    return f"{value:.1f} {unit}"


# Pure decisions ------------------------------------------------------------------------


def cutoffs(policy: RetentionPolicy, at: float) -> Cutoffs:
    """The moments before which records are due at time ``at``."""
    return Cutoffs(
        deliveries=at - policy.deliveries_days * DAY_SECONDS,
        events=at - policy.events_days * DAY_SECONDS,
        run_logs=at - policy.run_logs_days * DAY_SECONDS,
        agent_homes=at - policy.agent_homes_days * DAY_SECONDS,
    )


def prune_is_due(last_started: float | None, at: float, *, interval: float = DAY_SECONDS) -> bool:
    """True when no prune started within ``interval`` before ``at``.

    A start recorded further in the future than ``interval`` (a clock set back a long
    way) does not block pruning forever.
    """
    if last_started is None:
        return True
    return at - last_started >= interval or last_started - at >= interval


def deliveries_due(cutoff: float) -> ColumnElement[bool]:
    """Processed or dead deliveries finished before ``cutoff``; pending ones never match."""
    return func.coalesce(Delivery.processed_at, Delivery.dead_at) < cutoff


def events_due(cutoff: float) -> ColumnElement[bool]:
    """Events older than ``cutoff`` of runs that finished (terminal status) before ``cutoff``, or of no run."""
    finished_runs = select(Run.id).where(Run.status.in_(sorted(TERMINAL)), Run.finished_at < cutoff)
    return and_(Event.created_at < cutoff, or_(Event.run_id.is_(None), Event.run_id.in_(finished_runs)))


# Database ------------------------------------------------------------------------------


def _byte_length(db: Database, column: Any) -> Any:
    if db.is_sqlite:
        return func.length(cast(column, LargeBinary))
    return func.octet_length(cast(column, Text))


def _measure(db: Database, table: Any, payload: Any, due: ColumnElement[bool]) -> Removed:
    with db.read() as session:
        count, size = session.execute(
            select(func.count(), func.coalesce(func.sum(_byte_length(db, payload)), 0)).select_from(table).where(due)
        ).one()
    return Removed(int(count), int(size))


def _delete_batches(db: Database, table: Any, payload: Any, due: ColumnElement[bool], *,
                    batch_size: int) -> Removed:
    """Delete matching rows ``batch_size`` at a time, one transaction per batch."""
    removed = Removed()
    while True:
        with db.begin() as session:
            rows = session.execute(
                select(table.id, _byte_length(db, payload)).where(due).order_by(table.id).limit(batch_size)
                .with_for_update(skip_locked=True)
            ).all()
            if not rows:
                return removed
            sizes = {row_id: int(size or 0) for row_id, size in rows}
            # Re-check the condition: a row may have changed since (a dead delivery retried).
            gone = session.scalars(
                delete(table).where(table.id.in_(list(sizes)), due).returning(table.id)
                .execution_options(synchronize_session=False)
            ).all()
        removed += Removed(len(gone), sum(sizes[row_id] for row_id in gone))
        if len(rows) < batch_size:
            return removed


def prune_deliveries(db: Database, cutoff: float, *, dry_run: bool = False,
                     batch_size: int = BATCH_SIZE) -> Removed:
    """Delete processed and dead deliveries finished before ``cutoff``."""
    due = deliveries_due(cutoff)
    if dry_run:
        return _measure(db, Delivery, Delivery.payload, due)
    return _delete_batches(db, Delivery, Delivery.payload, due, batch_size=batch_size)


def prune_events(db: Database, cutoff: float, *, dry_run: bool = False, batch_size: int = BATCH_SIZE) -> Removed:
    """Delete the events of runs finished before ``cutoff`` and run-less events older than it."""
    due = events_due(cutoff)
    if dry_run:
        return _measure(db, Event, Event.payload, due)
    return _delete_batches(db, Event, Event.payload, due, batch_size=batch_size)


def _run_facts(db: Database, run_ids: list[str]) -> dict[str, RunFacts]:
    facts: dict[str, RunFacts] = {}
    with db.read() as session:
        for start in range(0, len(run_ids), 500):
            chunk = run_ids[start:start + 500]
            for run_id, status, finished_at in session.execute(
                select(Run.id, Run.status, Run.finished_at).where(Run.id.in_(chunk))
            ):
                facts[run_id] = RunFacts(status, finished_at)
    return facts


def live_home_keys(db: Database, state_dir: Path) -> set[str]:
    """Agent-home keys of every live run's workdir (recorded, and where this host would put it)."""
    worktrees = state_dir.resolve() / "worktrees"
    keys: set[str] = set()
    with db.read() as session:
        for run_id, worktree_path in session.execute(
            select(Run.id, Run.worktree_path).where(Run.status.in_(sorted(LIVE)))
        ):
            keys.add(files.home_key(worktrees / run_id))
            if worktree_path:
                keys.add(files.home_key(Path(worktree_path)))
    return keys


def repository_names(db: Database) -> tuple[set[str], set[str], set[str]]:
    """Repositories that are installed, that are not (inactive or installation deleted), and live runs' ones."""
    installed: set[str] = set()
    uninstalled: set[str] = set()
    with db.read() as session:
        rows = session.execute(
            select(Repository.full_name, Repository.active, Installation.deleted)
            .outerjoin(Installation, Installation.id == Repository.installation_id)
        ).all()
        busy = set(session.scalars(select(Run.repo).where(Run.status.in_(sorted(LIVE))).distinct()))
    for name, active, deleted in rows:
        (uninstalled if not active or deleted else installed).add(name)
    return installed, uninstalled, busy


# Files -----------------------------------------------------------------------------------


def prune_files(db: Database, settings: Settings, at: float, *, policy: RetentionPolicy,
                dry_run: bool = False) -> PruneReport:
    """Remove run logs, agent homes and mirrors under STATE_DIR that are due at ``at``."""
    limits = cutoffs(policy, at)
    report = PruneReport(dry_run=dry_run)
    folders = files.list_run_logs(settings.logs_dir, at=at)
    runs = _run_facts(db, [folder.key for folder in folders])
    report.run_logs = files.remove(files.run_logs_due(folders, runs, limits.run_logs), dry_run=dry_run)
    homes = files.list_agent_homes(settings.state_dir, at=at)
    if homes:
        protected = live_home_keys(db, settings.state_dir)
        report.agent_homes = files.remove(files.agent_homes_due(homes, limits.agent_homes, protected=protected),
                                          dry_run=dry_run)
    mirrors = files.list_mirrors(settings.state_dir, at=at)
    if mirrors:
        installed, uninstalled, busy = repository_names(db)
        due = files.mirrors_due(mirrors, uninstalled=uninstalled, installed=installed, busy=busy)
        report.mirrors = files.remove_mirrors(due, dry_run=dry_run)
    return report


# Refusal replies are throttled per hour: older rows change nothing.
REFUSAL_MEMORY_SECONDS = 3600.0


def prune_command_records(db: Database, *, events_cutoff: float, at: float, dry_run: bool = False) -> Removed:
    """Forget slash commands handled before ``events_cutoff`` and refusal replies older than the throttle window."""
    commands_due = CommandExecution.created_at < events_cutoff
    replies_due = RefusalReply.replied_at < at - REFUSAL_MEMORY_SECONDS
    count = 0
    with db.begin() as session:
        for table, due in ((CommandExecution, commands_due), (RefusalReply, replies_due)):
            count += int(session.scalar(select(func.count()).select_from(table).where(due)) or 0)
            if not dry_run:
                session.execute(delete(table).where(due))
    return Removed(count, 0)


# The whole prune ------------------------------------------------------------------------


def prune_database(db: Database, at: float, *, policy: RetentionPolicy, dry_run: bool = False,
                   batch_size: int = BATCH_SIZE) -> PruneReport:
    """Remove the deliveries and events due at ``at``."""
    limits = cutoffs(policy, at)
    return PruneReport(
        dry_run=dry_run,
        deliveries=prune_deliveries(db, limits.deliveries, dry_run=dry_run, batch_size=batch_size),
        events=prune_events(db, limits.events, dry_run=dry_run, batch_size=batch_size),
        command_records=prune_command_records(db, events_cutoff=limits.events, at=at, dry_run=dry_run),
    )


def merge(database: PruneReport, on_disk: PruneReport) -> PruneReport:
    """The database part of one report with the files part of another."""
    return PruneReport(database.dry_run or on_disk.dry_run, database.deliveries, database.events,
                       on_disk.run_logs, on_disk.agent_homes, on_disk.mirrors, database.command_records)


def prune(db: Database, settings: Settings, *, clock: Clock = now, dry_run: bool = False) -> PruneReport:
    """Prune the database and this host's STATE_DIR now (no daily limit)."""
    at = clock()
    policy = RetentionPolicy.from_settings(settings)
    database = prune_database(db, at, policy=policy, dry_run=dry_run)
    return merge(database, prune_files(db, settings, at, policy=policy, dry_run=dry_run))


def files_key(state_dir: Path, host: str | None = None) -> str:
    """The prune marker key remembering when this host's STATE_DIR was last pruned."""
    where = hashlib.sha256(f"{host or socket.gethostname()}\0{state_dir.resolve()}".encode()).hexdigest()[:24]
    return FILES_KEY_PREFIX + where


def claim_prune(db: Database, key: str, at: float, *, interval: float = DAY_SECONDS) -> bool:
    """Record a prune starting at ``at`` under ``key`` unless one started within ``interval``; True if claimed."""
    return claim_marker(db, key, at, due=lambda started: prune_is_due(started, at, interval=interval))


def record_prune(db: Database, key: str, at: float, report: PruneReport) -> None:
    """Remember when the prune claimed under ``key`` finished and what it removed."""
    finish_marker(db, key, at, report.as_dict())


def prune_if_due(db: Database, settings: Settings, *, clock: Clock = now,
                 interval: float = DAY_SECONDS) -> PruneReport | None:
    """Prune at most once per ``interval``: the database once for all hosts, files once per host.

    Returns None when neither part was due.
    """
    at = clock()
    policy = RetentionPolicy.from_settings(settings)
    ran = False
    database = PruneReport()
    on_disk = PruneReport()
    if claim_prune(db, DATABASE_KEY, at, interval=interval):
        ran = True
        database = prune_database(db, at, policy=policy)
        record_prune(db, DATABASE_KEY, clock(), database)
    own_files = files_key(settings.state_dir)
    if claim_prune(db, own_files, at, interval=interval):
        ran = True
        on_disk = prune_files(db, settings, at, policy=policy)
        record_prune(db, own_files, clock(), on_disk)
    if not ran:
        return None
    report = merge(database, on_disk)
    log.info("pruned", summary=report.summary())
    return report
