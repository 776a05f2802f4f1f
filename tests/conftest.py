"""Shared fixtures: real databases (SQLite file and ephemeral PostgreSQL), settings."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentz_app.config import Settings
from agentz_app.store.db import Database, refuse_sql_on_event_loop
from agentz_app.store.ephemeral_pg import EphemeralPostgres, find_pg_bin
from agentz_app.store.migrate import migrate
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
    server = EphemeralPostgres().start()
    yield server
    server.stop()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'agentz.db'}"


@pytest.fixture
def postgres_url(pg_server: EphemeralPostgres) -> str:
    return pg_server.create_database(f"t{next(_db_counter)}")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh, empty database URL: a SQLite file, then a PostgreSQL database."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    url: str = request.getfixturevalue(name)
    return url


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """A migrated database on SQLite and on PostgreSQL."""
    database = Database.from_url(db_url)
    migrate(database)
    yield database
    database.dispose()


@pytest.fixture
def sqlite_db(sqlite_url: str) -> Iterator[Database]:
    database = Database.from_url(sqlite_url)
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
