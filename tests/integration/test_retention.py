"""Pruning against real databases (SQLite and PostgreSQL) and a real STATE_DIR."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from agentz_app.config import Settings
from agentz_app.reconciler import run_reconciler
from agentz_app.store import retention
from agentz_app.store.db import Database
from agentz_app.store.models import Delivery, Event, Installation, Repository, Run
from agentz_app.store.prune_markers import marker_keys
from agentz_app.store.retention import (
    DATABASE_KEY,
    PruneReport,
    claim_prune,
    files_key,
    prune,
    prune_deliveries,
    prune_if_due,
)
from agentz_app.store.retention_files import home_key
from tests.fakes import FakeClock
from tests.waiting import wait_for_sync

DAY = 86400.0
NOW = 1_000_000_000.0


def _touch_tree(path: Path, at: float) -> None:
    """Date ``path`` and everything below it at ``at`` (links themselves, not their targets)."""
    for root, dirs, names in os.walk(path):
        for name in dirs + names:
            os.utime(os.path.join(root, name), (at, at), follow_symlinks=False)
    os.utime(path, (at, at))


def _folder(path: Path, at: float, content: str = "x" * 100) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "file.txt").write_text(content)
    _touch_tree(path, at)
    return path


def _delivery(name: str, **values: Any) -> Delivery:
    base: dict[str, Any] = {"delivery_id": name, "event": "issues", "payload": "{}" + " " * 98,
                            "received_at": NOW - 30 * DAY, "attempts": 0}
    return Delivery(**{**base, **values})


def _run(run_id: str, status: str, finished_days_ago: float | None, **values: Any) -> Run:
    finished = NOW - finished_days_ago * DAY if finished_days_ago is not None else None
    base: dict[str, Any] = {"repo": "o/r", "issue_number": 1, "created_at": NOW - 200 * DAY}
    return Run(**{**base, **values, "id": run_id, "status": status, "finished_at": finished})


@pytest.fixture
def state(settings: Settings, tmp_path: Path) -> Settings:
    return settings.model_copy(update={"state_dir": tmp_path / "state"})


def _seed(db: Database, settings: Settings) -> None:
    live_worktree = settings.state_dir.resolve() / "worktrees" / "live"
    with db.begin() as session:
        session.add_all([
            _delivery("old-processed", processed_at=NOW - 20 * DAY),
            _delivery("old-dead", dead_at=NOW - 20 * DAY, attempts=8, error="boom"),
            _delivery("old-pending", attempts=3, error="boom", next_attempt_at=NOW - 10 * DAY),
            _delivery("old-unscheduled"),
            _delivery("recent-processed", processed_at=NOW - 13 * DAY),
            _delivery("recent-dead", dead_at=NOW - DAY, attempts=8),
            _run("old-done", "done", 100),
            _run("old-failed", "failed", 91),
            _run("recent-done", "merged", 20),
            _run("live", "developing", None, worktree_path=str(live_worktree)),
            _run("requeued", "queued", None),  # failed long ago, resumed since: live again
            Installation(id=1, account="o"), Installation(id=2, account="x", deleted=True),
            Repository(id=10, installation_id=1, full_name="o/kept"),
            Repository(id=11, installation_id=1, full_name="o/gone", active=False),
            Repository(id=12, installation_id=2, full_name="x/uninstalled"),
            Repository(id=13, installation_id=1, full_name="o/busy", active=False),
        ])
        for run_id in ("old-done", "old-failed", "recent-done", "live", "requeued"):
            session.add_all([Event(run_id=run_id, kind="transition", to_status="queued", created_at=NOW - 150 * DAY,
                                   payload={"reason": "x" * 50}) for _ in range(3)])
        session.add(_run("busy-run", "ready", None, repo="o/busy"))
        session.add_all([  # outsiders' commands and trigger labels
            Event(run_id=None, kind="command", created_at=NOW - 91 * DAY, payload={"accepted": False}),
            Event(run_id=None, kind="command", created_at=NOW - 89 * DAY, payload={"accepted": False}),
        ])
    logs = settings.logs_dir / "runs"
    for run_id in ("old-done", "old-failed", "recent-done", "live", "requeued"):
        _folder(logs / run_id, NOW - 100 * DAY)
    _folder(logs / "unknown-old", NOW - 31 * DAY)
    _folder(logs / "unknown-recent", NOW - 29 * DAY)
    homes = settings.state_dir / "agent-homes" / "claude"
    _folder(homes / home_key(live_worktree), NOW - 60 * DAY)
    _folder(homes / "stale", NOW - 15 * DAY)
    _folder(homes / "fresh", NOW - 13 * DAY)
    for name in ("o/kept", "o/gone", "x/uninstalled", "o/busy", "o/unknown"):
        owner, repo = name.split("/")
        _folder(settings.state_dir / "mirrors" / owner / f"{repo}.git", NOW - 365 * DAY)


def _deliveries(db: Database) -> set[str]:
    with db.read() as session:
        return set(session.scalars(select(Delivery.delivery_id)))


def _event_runs(db: Database) -> dict[str, int]:
    with db.read() as session:
        counts: dict[str, int] = {}
        for run_id in session.scalars(select(Event.run_id)):
            counts[str(run_id)] = counts.get(str(run_id), 0) + 1
        return counts


def _names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def _mirrors(settings: Settings) -> set[str]:
    root = settings.state_dir / "mirrors"
    return {f"{p.parent.name}/{p.name}" for p in root.glob("*/*.git")}


def test_prune_deletes_exactly_what_is_due(db: Database, state: Settings) -> None:
    _seed(db, state)
    live_home = home_key(state.state_dir.resolve() / "worktrees" / "live")

    report = prune(db, state, clock=FakeClock(NOW))

    assert _deliveries(db) == {"old-pending", "old-unscheduled", "recent-processed", "recent-dead"}
    assert _event_runs(db) == {"recent-done": 3, "live": 3, "requeued": 3, "None": 1}
    assert _names(state.logs_dir / "runs") == {"recent-done", "live", "requeued", "unknown-recent"}
    assert _names(state.state_dir / "agent-homes" / "claude") == {live_home, "fresh"}
    assert _mirrors(state) == {"o/kept.git", "o/busy.git", "o/unknown.git"}
    assert not (state.state_dir / "mirrors" / "o" / "gone.lock").exists()
    assert [(name, part.count) for name, part in report.parts().items()] == [
        ("deliveries", 2), ("events", 7), ("run_logs", 3), ("agent_homes", 1), ("mirrors", 2),
        ("command_records", 0)]
    assert report.deliveries.bytes == 2 * 100
    assert report.run_logs.bytes > 3 * 100  # the files and the folders themselves


def test_a_dry_run_deletes_nothing_and_reports_what_a_prune_would(db: Database, state: Settings) -> None:
    _seed(db, state)
    before = (_deliveries(db), _event_runs(db), _names(state.logs_dir / "runs"),
              _names(state.state_dir / "agent-homes" / "claude"), _mirrors(state))

    dry = prune(db, state, clock=FakeClock(NOW), dry_run=True)

    after = (_deliveries(db), _event_runs(db), _names(state.logs_dir / "runs"),
             _names(state.state_dir / "agent-homes" / "claude"), _mirrors(state))
    assert after == before
    assert not list((state.state_dir / "mirrors").glob("*/*.lock"))  # not even a lock file appears
    real = prune(db, state, clock=FakeClock(NOW))
    assert dry.dry_run
    assert not real.dry_run
    assert dry.parts() == real.parts()
    assert dry.summary().startswith("would remove deliveries=2 (200 B) events=7")


def test_deliveries_go_in_batches_and_all_due_ones_go(db: Database) -> None:
    with db.begin() as session:
        session.add_all([_delivery(f"d{i}", processed_at=NOW - 20 * DAY) for i in range(25)])
        session.add(_delivery("pending"))
    removed = prune_deliveries(db, NOW - 14 * DAY, batch_size=4)
    assert (removed.count, removed.bytes) == (25, 2500)
    assert _deliveries(db) == {"pending"}


def test_a_mirror_in_use_is_left_alone(db: Database, state: Settings) -> None:
    _seed(db, state)
    lock_path = state.state_dir / "mirrors" / "o" / "gone.lock"
    with open(lock_path, "a+") as held:  # a worker fetching into it (same lock as workers.worktrees)
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        report = prune(db, state, clock=FakeClock(NOW))
    assert "o/gone.git" in _mirrors(state)
    assert report.mirrors.count == 1  # x/uninstalled only


def test_pruning_a_home_removes_links_planted_in_it_not_their_targets(db: Database, state: Settings,
                                                                     tmp_path: Path) -> None:
    outside = _folder(tmp_path / "precious", NOW)
    home = state.state_dir / "agent-homes" / "codex" / "attacker"
    home.mkdir(parents=True)
    (home / "escape").symlink_to(outside)
    (home / "escape-file").symlink_to(outside / "file.txt")
    locked = home / "locked"
    _folder(locked, NOW - 30 * DAY)
    locked.chmod(0o500)  # an agent making its files hard to delete
    _touch_tree(home, NOW - 30 * DAY)

    report = prune(db, state, clock=FakeClock(NOW))

    assert report.agent_homes.count == 1
    assert not os.path.lexists(home)
    assert (outside / "file.txt").read_text() == "x" * 100


def test_a_future_mtime_does_not_keep_a_stale_home_forever(db: Database, state: Settings) -> None:
    home = _folder(state.state_dir / "agent-homes" / "claude" / "timetraveller", NOW - 30 * DAY)
    os.utime(home / "file.txt", (NOW + 365 * DAY, NOW + 365 * DAY))
    assert prune(db, state, clock=FakeClock(NOW)).agent_homes.count == 1


def test_a_retried_dead_delivery_is_not_deleted_by_a_prune_that_saw_it_dead(db: Database) -> None:
    with db.begin() as session:
        session.add(_delivery("revived", dead_at=NOW - 20 * DAY))
    due = retention.deliveries_due(NOW - 14 * DAY)
    with db.begin() as session:
        ids = list(session.scalars(select(Delivery.id).where(due)))
        session.query(Delivery).filter(Delivery.id.in_(ids)).update({"dead_at": None, "attempts": 0})
    assert prune_deliveries(db, NOW - 14 * DAY).count == 0
    assert _deliveries(db) == {"revived"}


# Once a day --------------------------------------------------------------------------


def test_two_reconcilers_sharing_a_database_prune_once_a_day(db_url: str, db: Database, state: Settings) -> None:
    other = Database.from_url(db_url)
    clock = FakeClock(NOW)
    try:
        with db.begin() as session:
            session.add(_delivery("old", processed_at=NOW - 20 * DAY))
        first = prune_if_due(db, state, clock=clock)
        second = prune_if_due(other, state, clock=clock)
        assert first is not None
        assert first.deliveries.count == 1
        assert second is None

        with db.begin() as session:
            session.add(_delivery("later", processed_at=NOW - 20 * DAY))
        clock.now += 23 * 3600
        assert prune_if_due(other, state, clock=clock) is None
        assert prune_if_due(db, state, clock=clock) is None
        clock.now += 2 * 3600
        again = prune_if_due(other, state, clock=clock)
        assert again is not None
        assert again.deliveries.count == 1
        assert prune_if_due(db, state, clock=clock) is None
    finally:
        other.dispose()


def test_a_prune_killed_after_claiming_is_not_restarted_the_same_day(db: Database, state: Settings) -> None:
    clock = FakeClock(NOW)
    assert claim_prune(db, DATABASE_KEY, clock.now)  # then the process died
    assert claim_prune(db, files_key(state.state_dir), clock.now)
    clock.now += 3600
    assert prune_if_due(db, state, clock=clock) is None
    clock.now += DAY
    assert prune_if_due(db, state, clock=clock) is not None


def test_each_host_prunes_its_own_state_dir_once_a_day(db: Database, state: Settings, tmp_path: Path) -> None:
    clock = FakeClock(NOW)
    other_host = state.model_copy(update={"state_dir": tmp_path / "other-host-state"})
    _folder(other_host.logs_dir / "runs" / "gone", NOW - 40 * DAY)
    assert prune_if_due(db, state, clock=clock) is not None
    report = prune_if_due(db, other_host, clock=clock)
    assert report is not None
    assert (report.deliveries.count, report.run_logs.count) == (0, 1)
    keys = set(marker_keys(db))
    assert {DATABASE_KEY, files_key(state.state_dir), files_key(other_host.state_dir)} <= keys


def _counting(monkeypatch: pytest.MonkeyPatch, name: str) -> list[float]:
    calls: list[float] = []
    original: Callable[..., PruneReport] = getattr(retention, name)

    def counted(*args: Any, **kwargs: Any) -> PruneReport:
        calls.append(time.monotonic())
        return original(*args, **kwargs)

    monkeypatch.setattr(retention, name, counted)
    return calls


def test_reconciler_loops_on_two_connections_prune_the_database_and_files_once(
    db_url: str, db: Database, state: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = state.model_copy(update={"reconcile_interval_seconds": 0.01})
    with db.begin() as session:
        session.add(_delivery("old", processed_at=time.time() - 20 * DAY))
    database_prunes = _counting(monkeypatch, "prune_database")
    file_prunes = _counting(monkeypatch, "prune_files")
    stop = threading.Event()
    passes = [0, 0]
    lock = threading.Lock()

    def counter(index: int) -> Callable[[object], None]:
        def count(_: object) -> None:
            with lock:
                passes[index] += 1
        return count

    databases = [Database.from_url(db_url) for _ in range(2)]
    threads = [threading.Thread(target=run_reconciler, args=(settings,),
                                kwargs={"db": databases[i], "stop": stop, "on_report": counter(i)})
               for i in range(2)]
    try:
        for thread in threads:
            thread.start()
        wait_for_sync(lambda: min(passes) >= 10, timeout=30, what="ten reconciler passes in each thread")
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        for database in databases:
            database.dispose()
    assert min(passes) >= 10
    assert (len(database_prunes), len(file_prunes)) == (1, 1)
    assert _deliveries(db) == set()


def test_handled_commands_and_refusal_throttles_are_forgotten_once_they_can_no_longer_matter(db: Database) -> None:
    from agentz_app.store.models import CommandExecution, RefusalReply
    from agentz_app.store.retention import prune_command_records

    with db.begin() as session:
        session.add_all([
            CommandExecution(comment_id=1, command_hash="a", repo="o/r", issue_number=1, login="x",
                             created_at=NOW - 100 * DAY),
            CommandExecution(comment_id=2, command_hash="b", repo="o/r", issue_number=1, login="x",
                             created_at=NOW - 1 * DAY),
            RefusalReply(repo="o/r", issue_number=1, login="old", replied_at=NOW - 7200),
            RefusalReply(repo="o/r", issue_number=1, login="recent", replied_at=NOW - 60),
        ])
    cutoff = NOW - 90 * DAY
    assert prune_command_records(db, events_cutoff=cutoff, at=NOW, dry_run=True).count == 2
    assert prune_command_records(db, events_cutoff=cutoff, at=NOW).count == 2
    with db.read() as session:
        assert [c.comment_id for c in session.query(CommandExecution)] == [2]
        assert [r.login for r in session.query(RefusalReply)] == ["recent"]
