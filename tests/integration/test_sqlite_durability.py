"""SQLite durability settings: WAL with synchronous=NORMAL by default, FULL on request, and what NORMAL keeps."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from agentz_app.bootstrap import open_database
from agentz_app.config import Settings
from agentz_app.errors import ConfigError
from agentz_app.store.db import Database
from agentz_app.store.migrate import migrate
from agentz_app.store.runs import RunQueue

_NORMAL, _FULL = 1, 2  # PRAGMA synchronous values


def _pragmas(db: Database) -> tuple[str, int]:
    with db.engine.connect() as connection:
        journal = connection.exec_driver_sql("PRAGMA journal_mode").scalar_one()
        synchronous = connection.exec_driver_sql("PRAGMA synchronous").scalar_one()
    return str(journal), int(synchronous)


def test_sqlite_runs_wal_with_normal_synchronous_by_default(sqlite_url: str) -> None:
    db = Database.from_url(sqlite_url)
    try:
        assert _pragmas(db) == ("wal", _NORMAL)
    finally:
        db.dispose()


def test_the_configured_synchronous_level_reaches_every_connection(settings: Settings) -> None:
    db = open_database(settings.model_copy(update={"sqlite_synchronous": "full"}))
    try:
        assert _pragmas(db) == ("wal", _FULL)
    finally:
        db.dispose()


def test_an_unknown_synchronous_level_names_the_variable(sqlite_url: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Database.from_url(sqlite_url, sqlite_synchronous="off")
    assert raised.value.variable == "SQLITE_SYNCHRONOUS"


def test_a_killed_process_loses_no_committed_claim(sqlite_url: str) -> None:
    db = Database.from_url(sqlite_url)
    migrate(db)
    run, _ = RunQueue(db).intake.enqueue("o/r", 1)
    db.dispose()
    claimer = textwrap.dedent(f"""
        import os, signal
        from agentz_app.store.db import Database
        from agentz_app.store.runs import RunQueue
        queue = RunQueue(Database.from_url({sqlite_url!r}))
        [claimed] = queue.leases.take("doomed", statuses=("queued",), target="planning")
        queue.moves.complete(claimed.lease, "cancelled", event={{"reason": "before the kill"}})
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    result = subprocess.run([sys.executable, "-c", claimer], check=False, timeout=60)
    assert result.returncode == -9
    db = Database.from_url(sqlite_url)
    try:
        queue = RunQueue(db)
        assert queue.reads.get(run.id).status == "cancelled"
        assert [e.kind for e in queue.reads.events(run.id)][-2:] == ["claimed", "transition"]
    finally:
        db.dispose()
