"""Databases at the latest schema revision, copied from one migrated per test process instead of migrated each.

Copying the file (or cloning a PostgreSQL template database) gives the same schema and rows as running
every migration again, in a fraction of the time; the migrations themselves are tested in ``test_store``.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from agentz_app.store.db import Database
from agentz_app.store.migrate import migrate


def migrate_url(url: str) -> None:
    """Bring the database at ``url`` to the latest revision."""
    database = Database.from_url(url)
    try:
        migrate(database)
    finally:
        database.dispose()


@functools.cache
def migrated_sqlite_file() -> Path:
    """A SQLite file migrated once in this process (removed at exit); copy it, never open it."""
    folder = Path(tempfile.mkdtemp(prefix="agentz-migrated-"))
    atexit.register(shutil.rmtree, folder, True)
    path = folder / "agentz.db"
    migrate_url(f"sqlite:///{path}")
    assert not path.with_name(path.name + "-wal").exists(), "the template must be checkpointed before copying"
    return path


def copy_migrated_sqlite(path: Path) -> str:
    """Create the SQLite database ``path`` at the latest revision and return its URL."""
    assert not path.exists(), f"{path} is not a fresh database"
    shutil.copyfile(migrated_sqlite_file(), path)
    return f"sqlite:///{path}"
