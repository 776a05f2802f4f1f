from __future__ import annotations

from sqlalchemy import select

from agentz_app.store.db import Database
from agentz_app.store.migrate import migrate
from agentz_app.store.models import Delivery


def test_migrate_twice_is_a_no_op(db: Database) -> None:
    migrate(db)
    assert db.ping()


def test_delivery_round_trip(db: Database) -> None:
    with db.begin() as session:
        session.add(Delivery(delivery_id="d-1", event="issues", action="opened", payload="{}"))
    with db.read() as session:
        stored = session.scalars(select(Delivery)).one()
    assert (stored.delivery_id, stored.event, stored.processed_at) == ("d-1", "issues", None)


def test_the_head_revision_constant_matches_the_migration_scripts() -> None:
    from alembic.script import ScriptDirectory

    from agentz_app.store.migrate import HEAD_REVISION, MIGRATIONS_DIR, alembic_config

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert script.get_current_head() == HEAD_REVISION
    assert MIGRATIONS_DIR.is_dir()


def test_a_new_database_has_no_revision_until_migrated(db_url: str) -> None:
    from agentz_app.store.migrate import HEAD_REVISION, current_revision

    database = Database.from_url(db_url)
    try:
        assert current_revision(database) is None
        migrate(database)
        assert current_revision(database) == HEAD_REVISION
    finally:
        database.dispose()


def test_upgrading_a_0001_database_gives_exactly_the_models_schema(db_url: str) -> None:
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import text

    from agentz_app.store.migrate import alembic_config
    from agentz_app.store.models import Base, Process

    database = Database.from_url(db_url)
    try:
        config = alembic_config(str(database.engine.url))
        with database.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0001")
            connection.execute(text(
                "INSERT INTO processes (name, role, host, state, restarts, started_at, heartbeat_at, detail)"
                " VALUES ('worker-1', 'worker', 'old-host', 'running', 0, 1.0, 1.0, '')"))
        migrate(database)
        with database.engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
        with database.begin() as session:  # two hosts may now run a child of the same name
            session.add_all([Process(host=host, name="worker-1", role="worker", state="running")
                             for host in ("a", "b")])
        with database.read() as session:
            assert sorted(session.scalars(select(Process.host))) == ["a", "b"]
    finally:
        database.dispose()
