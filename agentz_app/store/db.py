"""Engine creation and transactions for SQLite and PostgreSQL.

SQLite runs in WAL mode with ``synchronous=NORMAL`` (``FULL`` on request) and a 15 s busy timeout, and every
transaction starts with ``BEGIN IMMEDIATE`` (SQLAlchemy's pysqlite begin-event
recipe), so a transaction that reads then writes never dies on a lock upgrade.
Read-only work can ask for a deferred ``BEGIN`` with :meth:`Database.read`.
PostgreSQL connections are not pinged at checkout (a round trip each time): they are recycled
after :data:`POOL_RECYCLE_SECONDS`, and a dropped one fails its unit of work once and is replaced.

Every unit of work runs in a worker thread: the store API is synchronous, and async code calls it
through :meth:`Database.run`, never directly. A ``before_cursor_execute`` guard notices SQL issued
on a thread that runs an asyncio event loop (it would stall every coroutine of that loop): engines
log it, and :func:`refuse_sql_on_event_loop` (on in every test run) makes it raise
:class:`SqlOnEventLoop`. SQLite connections may move between threads (``check_same_thread=False``,
a ``QueuePool`` hands each connection to one thread at a time); a session never leaves the thread
that opened it.

The engine never creates folders: :func:`check_sqlite_path` says whether a SQLite file may be
created where the URL points, and :meth:`Database.connect_or_raise` turns an unreachable database
into one :class:`DatabaseUnavailable` line naming ``DATABASE_URL`` and the cause.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import create_engine, event, make_url, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from agentz_app.errors import ConfigError, StoreError
from agentz_app.logs import get_logger

_DEFERRED = "agentz_deferred"
_STATEMENT_WORDS = 4
_MAX_OVERFLOW = 10
POOL_RECYCLE_SECONDS = 1800
SQLITE_SYNCHRONOUS = ("normal", "full")
_MAX_REPORTED = 100
_DEFAULT_THREADS = 4
_ASYNC_FLAGS = inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR

P = ParamSpec("P")
T = TypeVar("T")

log = get_logger(__name__)


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


class SqlOnEventLoop(StoreError):
    """SQL ran on a thread that runs an asyncio event loop; the message names the statement and the coroutine."""

    def __init__(self, statement: str, coroutine: str) -> None:
        self.statement = statement
        self.coroutine = coroutine
        super().__init__(f"SQL on the event loop's thread ({statement_head(statement)} …) in {coroutine}: every "
                         "coroutine waits for it; call the store through `await db.run(function, ...)`")


def statement_head(statement: str) -> str:
    """The first words of a SQL statement, for messages."""
    return " ".join(statement.split()[:_STATEMENT_WORDS])


def on_event_loop() -> bool:
    """True when the calling thread is running an asyncio event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _frames_to_the_loop() -> Iterator[FrameType]:
    """The calling stack, innermost first, up to the innermost coroutine (or async generator) frame:
    the code that blocks the loop, and every plain function it called on the way to the SQL."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        yield frame
        if frame.f_code.co_flags & _ASYNC_FLAGS:
            return
        frame = frame.f_back


def _coroutine_of(frames: Sequence[FrameType]) -> FrameType | None:
    """The coroutine frame that ends ``frames`` (None when a plain callback of the loop ran the SQL)."""
    return frames[-1] if frames and frames[-1].f_code.co_flags & _ASYNC_FLAGS else None


def _describe(frame: FrameType | None) -> str:
    if frame is None:
        return "a callback of the loop"
    return f"{frame.f_code.co_name} ({frame.f_code.co_filename}:{frame.f_lineno})"


def refuse_sql_on_event_loop(*, allowed_in: Sequence[Path] = ()) -> Callable[[], None]:
    """Make SQL on an event loop's thread raise SqlOnEventLoop on every engine; returns the undo.

    SQL that code under one of ``allowed_in`` runs on the loop (a test suite's own setup and checks,
    in its coroutines or in the callbacks it hands to a harness) is let through.
    """
    folders = tuple(f"{folder.resolve()}/" for folder in allowed_in)

    def refuse(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if not on_event_loop():
            return
        frames = list(_frames_to_the_loop())
        if folders and any(frame.f_code.co_filename.startswith(folders) for frame in frames):
            return
        raise SqlOnEventLoop(statement, _describe(_coroutine_of(frames)))

    event.listen(Engine, "before_cursor_execute", refuse)
    return functools.partial(event.remove, Engine, "before_cursor_execute", refuse)


def _warn_on_event_loop(engine: Engine) -> None:
    """Log SQL run on an event loop's thread, once per place in a coroutine that runs it."""
    reported: set[str] = set()

    @event.listens_for(engine, "before_cursor_execute")
    def _warn(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if on_event_loop():
            coroutine = _describe(_coroutine_of(list(_frames_to_the_loop())))
            if coroutine not in reported and len(reported) < _MAX_REPORTED:
                reported.add(coroutine)
                log.warning("SQL on the event loop's thread; it stalls every coroutine",
                            statement=statement_head(statement), coroutine=coroutine)


def create_db_engine(url: str, *, pool_size: int = 5, sqlite_synchronous: str = "normal") -> Engine:
    """An engine configured for durability (creates no file's folder).

    ``sqlite_synchronous`` (SQLite only, WAL mode): ``normal`` keeps every commit through a
    process crash, ``full`` also through an OS crash or power loss (an fsync per commit)."""
    if sqlite_synchronous not in SQLITE_SYNCHRONOUS:
        raise ConfigError("SQLITE_SYNCHRONOUS", f"must be one of {', '.join(SQLITE_SYNCHRONOUS)}")
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        _warn_on_event_loop(engine)

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
    engine = create_engine(url, pool_size=pool_size, max_overflow=_MAX_OVERFLOW, pool_pre_ping=False,
                           pool_recycle=POOL_RECYCLE_SECONDS)
    _warn_on_event_loop(engine)
    return engine


class Database:
    """An engine plus session factory; the unit of work for every repository.

    Async code runs each unit of work with :meth:`run`, on threads of its own (as many as the
    pool keeps connections, so each thread's kept claim connection stays within that count), so
    database work neither blocks the event loop nor queues behind other threaded work (git, file
    copies).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(
            engine.execution_options(**{_DEFERRED: True}), expire_on_commit=False
        )
        self._threads: ThreadPoolExecutor | None = None

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> Database:
        return cls(create_db_engine(url, **kwargs))

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    async def run(self, function: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call the synchronous ``function`` (one unit of work) on a database thread and await its result."""
        if self._threads is None:
            self._threads = ThreadPoolExecutor(max_workers=self._thread_count(), thread_name_prefix="agentz-db")
        call = functools.partial(contextvars.copy_context().run, function, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._threads, call)

    def _thread_count(self) -> int:
        size = getattr(self.engine.pool, "size", None)
        return max(1, int(size())) if callable(size) else _DEFAULT_THREADS

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
        """Close every connection and stop the database threads (work already handed to them finishes first)."""
        if self._threads is not None:
            self._threads.shutdown(wait=True)
            self._threads = None
        self.engine.dispose()
