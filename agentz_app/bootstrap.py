"""One place that wires settings, logging and the database for every entry point."""

from __future__ import annotations

from pathlib import Path

from agentz_app.config import Settings
from agentz_app.logs import configure_logging
from agentz_app.secrets import configured_secret_values
from agentz_app.store.db import Database, check_sqlite_path
from agentz_app.store.migrate import migrate


def load_settings(env_file: str | Path | None = ".env") -> Settings:
    """Settings from env/.env with logging configured to match (and to redact the configured secrets)."""
    settings = Settings.load(env_file)
    configure_logging(settings.log_format, settings.log_level, secret_values=configured_secret_values(settings))
    return settings


def open_database(settings: Settings, *, run_migrations: bool = True, create: bool = True) -> Database:
    """Open the configured database and bring its schema up to date.

    ``create=False`` (read-only commands) never creates a SQLite file; with ``create=True`` its
    folder must exist unless it is STATE_DIR. An unreachable database raises DatabaseUnavailable.
    """
    check_sqlite_path(settings.database_url, create=create, creatable=settings.state_dir)
    db = Database.from_url(settings.database_url)
    try:
        db.connect_or_raise()
        if run_migrations:
            migrate(db)
    except BaseException:
        db.dispose()
        raise
    return db
