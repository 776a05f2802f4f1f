"""Schema migrations with alembic, run by ``agentz migrate`` and at every start."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from agentz_app.store.db import Database

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(db: Database) -> None:
    """Bring the schema to the latest revision; safe to call from many processes."""
    config = alembic_config(str(db.engine.url))
    with db.engine.begin() as connection:
        if db.engine.dialect.name == "postgresql":
            # Serialise concurrent starts: one process migrates, the others wait.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(72787265)")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
