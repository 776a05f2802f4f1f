"""Schema migrations with alembic, run by ``agentz migrate`` and at every start.

Every process migrates at start, so the common case — the schema is already current —
is answered with one query and without importing alembic (about 10 MB per process).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from agentz_app.store.db import Database

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# The newest revision in migrations/versions; a test keeps the two in step.
HEAD_REVISION = "0015_claim_order_live"


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def current_revision(db: Database) -> str | None:
    """The schema revision recorded in the database, or None for a new database."""
    try:
        with db.read() as session:
            return session.execute(text("SELECT version_num FROM alembic_version")).scalar_one_or_none()
    except DBAPIError:
        return None


def migrate(db: Database) -> None:
    """Bring the schema to the latest revision; safe to call from many processes."""
    if current_revision(db) == HEAD_REVISION:
        return
    from alembic import command

    config = alembic_config(str(db.engine.url))
    with db.engine.begin() as connection:
        if db.engine.dialect.name == "postgresql":
            # Serialise concurrent starts: one process migrates, the others wait.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(72787265)")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
