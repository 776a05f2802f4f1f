"""Engine creation and transactions for SQLite and PostgreSQL.

SQLite runs in WAL mode with ``synchronous=NORMAL`` (``FULL`` on request) and a 15 s busy timeout, and every
transaction starts with ``BEGIN IMMEDIATE`` (SQLAlchemy's pysqlite begin-event
recipe), so a transaction that reads then writes never dies on a lock upgrade.
Read-only work can ask for a deferred ``BEGIN`` with :meth:`Database.read`.
PostgreSQL connections are not pinged at checkout (a round trip each time): they are recycled
after :data:`POOL_RECYCLE_SECONDS`, and a dropped one fails its unit of work once and is replaced.

The engine never creates folders: :func:`check_sqlite_path` says whether a SQLite file may be
created where the URL points, and :meth:`Database.connect_or_raise` turns an unreachable database
into one :class:`DatabaseUnavailable` line naming ``DATABASE_URL`` and the cause.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, make_url, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from agentz_app.errors import ConfigError

_DEFERRED = "agentz_deferred"
POOL_RECYCLE_SECONDS = 1800
SQLITE_SYNCHRONOUS = ("normal", "full")


def normalise_url(url: str) -> str:
    """Pick the psycopg 3 driver for plain ``postgresql://`` URLs."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url[len("postgresql://") :]
    if url.startswith("postgres://"):
        return "postgresql+psycopg://" + url[len("postgres://") :]
    return url


class DatabaseUnavailable(ConfigError):
    """The configured database cannot be opened or reached; the message names the cause."""

    def __init__(self, message: str) -> None:
        super().__init__("DATABASE_URL", message)


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (None for other databases and in-memory SQLite)."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and ":memory:" not in url:
        return Path(url[len(prefix) :].split("?", 1)[0])
    return None


def describe_url(url: str) -> str:
    """The URL with its password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(unparseable URL)"


def check_sqlite_path(url: str, *, create: bool, creatable: Path | None = None) -> None:
    """Raise DatabaseUnavailable unless the SQLite database of ``url`` exists or may be created.

    ``create=False`` (read-only commands): the file must exist. ``create=True``: the file may be
    new but its folder must exist, unless the folder is ``creatable`` (Agent-Z's STATE_DIR),
    which is created here. Other URLs pass.
    """
    path = sqlite_path(url)
    if path is None:
        return
    if not create:
        if not path.is_file():
            raise DatabaseUnavailable(f"no database at {path}: run `agentz migrate` to create it, "
                                      "or fix the path")
        return
    folder = path.parent
    if folder.is_dir():
        return
    if creatable is not None and folder.resolve() == creatable.resolve():
        folder.mkdir(parents=True, exist_ok=True)
        return
    raise DatabaseUnavailable(f"the folder {folder} of the SQLite database does not exist: create it, or fix the path")


def connection_problem(exc: BaseException) -> str:
    """The first line of a driver error's cause, without SQLAlchemy's background-link noise."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return lines[0] if lines else cause.__class__.__name__


def create_db_engine(url: str, *, pool_size: int = 5, sqlite_synchronous: str = "normal") -> Engine:
    """An engine configured for durability (creates no file's folder).

    ``sqlite_synchronous`` (SQLite only, WAL mode): ``normal`` keeps every commit through a
    process crash, ``full`` also through an OS crash or power loss (an fsync per commit)."""
    if sqlite_synchronous not in SQLITE_SYNCHRONOUS:
        raise ConfigError("SQLITE_SYNCHRONOUS", f"must be one of {', '.join(SQLITE_SYNCHRONOUS)}")
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _: Any) -> None:
            dbapi_connection.isolation_level = None  # let us emit BEGIN ourselves
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={sqlite_synchronous.upper()}")
            cursor.execute("PRAGMA busy_timeout=15000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            deferred = conn.get_execution_options().get(_DEFERRED, False)
            conn.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=10, pool_pre_ping=False,
                         pool_recycle=POOL_RECYCLE_SECONDS)


class Database:
    """An engine plus session factory; the unit of work for every repository."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(
            engine.execution_options(**{_DEFERRED: True}), expire_on_commit=False
        )

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Database:
        return cls(create_db_engine(url, **kwargs))

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def begin(self) -> Iterator[Session]:
        """A write transaction: committed when the block ends, rolled back on error."""
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only transaction that never takes SQLite's write lock."""
        with self._read_sessions() as session, session.begin():
            yield session

    def connect_or_raise(self) -> None:
        """Open one connection, or raise DatabaseUnavailable naming the URL (password hidden) and the cause."""
        try:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("SELECT 1")
        except (DBAPIError, OSError) as exc:
            raise DatabaseUnavailable(f"cannot connect to {describe_url(str(self.engine.url))}: "
                                      f"{connection_problem(exc)}") from None

    def ping(self) -> bool:
        """True when the database answers a trivial query."""
        try:
            with self.read() as session:
                session.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False

    def dispose(self) -> None:
        self.engine.dispose()
