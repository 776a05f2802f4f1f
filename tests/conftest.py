"""Shared fixtures: real databases (SQLite file and ephemeral PostgreSQL), settings."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from agentz_app.config import Settings
from agentz_app.store.db import Database, refuse_sql_on_event_loop, sqlite_path
from agentz_app.store.ephemeral_pg import EphemeralPostgres, find_pg_bin
from agentz_app.store.migrate import migrate
from tests.db_templates import copy_migrated_sqlite, migrate_url
from workers.sandbox import bwrap_works

# Agents run in the bubblewrap sandbox (the default) wherever the host allows it. Elsewhere the
# suite runs them unsandboxed and says so in its header; the sandbox's own tests skip there.
SANDBOX_USABLE = bwrap_works()
if not SANDBOX_USABLE:
    os.environ["AGENT_SANDBOX"] = "none"


def pytest_report_header() -> str:
    if SANDBOX_USABLE:
        return "agent sandbox: bubblewrap"
    return "agent sandbox: UNAVAILABLE (apt-get install bubblewrap); agents run unsandboxed, sandbox tests skip"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the slow end-to-end tests first (in collection order otherwise): with several test
    processes, the long ones then overlap the short ones instead of finishing alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


needs_sandbox = pytest.mark.skipif(not SANDBOX_USABLE, reason="bubblewrap not usable here (apt-get install bubblewrap)")

_db_counter = itertools.count()
TESTS_DIR = Path(__file__).parent


@pytest.fixture(scope="session", autouse=True)
def no_sql_on_event_loop() -> Iterator[None]:
    """Fail any SQL that Agent-Z runs on a thread running an event loop: async code calls the store via
    ``db.run``. A test's own coroutines may still seed and inspect the database directly.
    """
    lift = refuse_sql_on_event_loop(allowed_in=[TESTS_DIR])
    yield
    lift()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EphemeralPostgres]:
    if find_pg_bin() is None:
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql)")
    server = EphemeralPostgres(durable=False).start()
    yield server
    server.stop(wait_for_removal=False)  # the run need not wait while a detached rm deletes every test database


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'agentz.db'}"


@pytest.fixture
def postgres_url(pg_server: EphemeralPostgres) -> str:
    return pg_server.create_database(f"t{next(_db_counter)}")


@pytest.fixture(scope="session")
def migrated_postgres_template(pg_server: EphemeralPostgres) -> str:
    """A PostgreSQL database migrated once per test process; :func:`migrated_postgres_url` clones it."""
    name = "agentz_migrated_template"
    migrate_url(pg_server.create_database(name))
    return name


@pytest.fixture
def migrated_sqlite_url(sqlite_url: str) -> str:
    """The ``sqlite_url`` file, created as a copy of a migrated one (the same as migrating it, faster)."""
    path = sqlite_path(sqlite_url)
    assert path is not None
    return copy_migrated_sqlite(path)


@pytest.fixture
def migrated_postgres_url(pg_server: EphemeralPostgres, migrated_postgres_template: str) -> str:
    """A fresh PostgreSQL database created from a migrated template (the same as migrating it, faster)."""
    name = f"t{next(_db_counter)}"
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{migrated_postgres_template}"')
    return f"postgresql://postgres@127.0.0.1:{pg_server.port}/{name}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh database URL: a SQLite file, then a PostgreSQL database.

    Empty, unless the test also uses ``db`` (directly or through another fixture): then it is that
    database's URL, already migrated.
    """
    prefix = "migrated_" if "db" in request.fixturenames else ""
    url: str = request.getfixturevalue(f"{prefix}{request.param}_url")
    return url


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """A migrated database on SQLite and on PostgreSQL (at ``db_url``)."""
    database = Database.from_url(db_url)
    migrate(database)
    yield database
    database.dispose()


@pytest.fixture
def sqlite_db(migrated_sqlite_url: str) -> Iterator[Database]:
    """A migrated SQLite database at ``sqlite_url``."""
    database = Database.from_url(migrated_sqlite_url)
    migrate(database)
    yield database
    database.dispose()


@pytest.fixture
def settings(tmp_path: Path, sqlite_url: str) -> Settings:
    """Settings isolated from the developer's environment and .env."""
    return Settings.load(
        None,
        database_url=sqlite_url,
        state_dir=tmp_path / ".agent-z",
        github_webhook_secret="test-secret",
        github_app_id=1,
        default_backend="scripted",
        log_format="json",
    )
