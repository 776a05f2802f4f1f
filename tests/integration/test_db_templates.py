"""The test databases copied from a once-migrated template are what migrating them would give."""

from __future__ import annotations

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import make_url

from agentz_app.store.db import Database, normalise_url
from agentz_app.store.ephemeral_pg import EphemeralPostgres, find_pg_bin
from agentz_app.store.migrate import HEAD_REVISION, current_revision
from agentz_app.store.models import Base
from tests.waiting import wait_for_sync


def test_the_db_fixture_is_at_the_head_revision_with_exactly_the_models_schema(db: Database) -> None:
    assert current_revision(db) == HEAD_REVISION
    with db.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def test_db_url_names_the_db_fixtures_database_and_it_holds_no_runs(db: Database, db_url: str) -> None:
    assert db.engine.url.database == make_url(normalise_url(db_url)).database
    with db.read() as session:
        assert session.execute(Base.metadata.tables["runs"].select()).all() == []


@pytest.mark.postgres
def test_the_test_postgres_server_skips_flushes(pg_server: EphemeralPostgres) -> None:
    with psycopg.connect(pg_server.url) as conn:
        settings = {name: conn.execute(f"SHOW {name}").fetchone() for name in ("fsync", "synchronous_commit")}
    assert settings == {"fsync": ("off",), "synchronous_commit": ("off",)}


@pytest.mark.postgres
def test_a_benchmark_postgres_server_flushes_and_its_folder_goes_once_stopped_without_waiting() -> None:
    if find_pg_bin() is None:
        pytest.skip("PostgreSQL server binaries not installed")
    server = EphemeralPostgres().start()
    try:
        with psycopg.connect(server.url) as conn:
            assert conn.execute("SHOW fsync").fetchone() == ("on",)
    finally:
        server.stop(wait_for_removal=False)
    wait_for_sync(lambda: not server.root.exists(), timeout=60, what=f"{server.root} removed")
