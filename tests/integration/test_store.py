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
