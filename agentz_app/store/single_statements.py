"""The claim path's statements, sent straight to the driver's connection.

On PostgreSQL a claim or a fenced completion is one statement that is its own transaction
(autocommit, :class:`SingleStatements`); on SQLite they are a few statements in one transaction
(:func:`driver_rows`). Either way they skip SQLAlchemy's execution layer: each statement is
compiled once (:func:`claim_sql.driver_sql`), psycopg prepares it on the server after a few
calls, the pool only lends the driver connection, and rows come back as named tuples.

Connections are not pinged at checkout. A statement that fails because the server dropped its
connection is sent once more on a new connection only when the failure is known to have come
before the statement (its commit) left: the server had already spoken on the idle connection
(its termination notice, or the end of the stream, was waiting to be read). Any other failure is
raised as SQLAlchemy's :class:`DBAPIError` (``connection_invalidated`` on a disconnect): the
statement may have committed.
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import threading
import weakref
from collections import namedtuple
from functools import cache
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql import ClauseElement

from agentz_app.store.claim_sql import driver_sql


@cache
def _row_type(names: tuple[str, ...]) -> Any:
    return namedtuple("Row", names)  # type: ignore[misc]  # built once per result shape


def _server_spoke(dbapi_connection: Any) -> bool:
    """True when the idle connection has something to read: the server said goodbye (or closed it)."""
    poller = select.poll()
    poller.register(dbapi_connection.fileno(), select.POLLIN)
    return bool(poller.poll(0))


def _rows(cursor: Any, columns: tuple[str, ...]) -> list[Any]:
    if not columns:
        return []
    row_type = _row_type(columns)
    return [row_type(*row) for row in cursor.fetchall()]


def driver_rows(connection: Connection, statement: ClauseElement, params: dict[str, Any]) -> list[Any]:
    """Execute ``statement``, compiled once, on the driver connection inside ``connection``'s transaction."""
    dialect = connection.dialect
    compiled = driver_sql(statement, dialect)
    values = compiled.parameters(params)
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(compiled.sql, values)
        return _rows(cursor, compiled.columns)
    except dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(compiled.sql, values, exc, dialect.loaded_dbapi.Error, dialect=dialect) from exc
    finally:
        cursor.close()


class SingleStatements:
    """Run one autocommit statement at a time on a driver connection each thread keeps; rows by column name.

    A thread takes its connection from the pool at its first statement and keeps it, detached
    from the pool (so it never goes back in autocommit mode): no checkout, check-in or mode switch
    per statement. It is closed when the server drops it, when the engine is disposed or when
    this object goes away, and replaced in a forked child (which never closes its parent's).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._kept = threading.local()
        self._opened: list[tuple[int, Any]] = []  # (process id, connection) of every thread's connection
        weakref.finalize(self, _close_all, self._opened)

    def rows(self, statement: ClauseElement, params: dict[str, Any]) -> list[Any]:
        """Execute ``statement`` as its own transaction with ``params``; its rows (attribute access)."""
        compiled = driver_sql(statement, self.engine.dialect)
        values = compiled.parameters(params)
        try:
            return self._send(compiled.sql, values, compiled.columns)
        except _DroppedBeforeSending:
            return self._send(compiled.sql, values, compiled.columns, retry=False)

    def _connection(self) -> Any:
        """This thread's driver connection (taken from the pool and detached at first use)."""
        kept = getattr(self._kept, "connection", None)
        if kept is not None and self._kept.pid == os.getpid():
            return kept
        pooled: PoolProxiedConnection = self.engine.raw_connection()
        connection: Any = pooled.driver_connection  # read before detaching, which forgets it
        pooled.detach()
        connection.autocommit = True
        # The detached proxy is kept too: dropping it would close the connection.
        self._kept.connection, self._kept.pid, self._kept.pooled = connection, os.getpid(), pooled
        if not self._opened:  # the first connection: close them all with the engine
            event.listen(self.engine, "engine_disposed", functools.partial(_close_all, self._opened))
        self._opened.append((os.getpid(), connection))
        return connection

    def _forget(self, connection: Any) -> None:
        self._kept.connection = self._kept.pooled = None
        self._opened[:] = [(pid, kept) for pid, kept in self._opened if kept is not connection]
        with contextlib.suppress(self.engine.dialect.loaded_dbapi.Error):
            connection.close()

    def _send(self, sql: str, values: Any, columns: tuple[str, ...], *, retry: bool = True) -> list[Any]:
        dialect = self.engine.dialect
        connection = self._connection()
        dropped = True  # nothing has been sent until the connection is found open
        try:
            dropped = _server_spoke(connection)
            with connection.cursor() as cursor:
                cursor.execute(sql, values)
                return _rows(cursor, columns)
        except dialect.loaded_dbapi.Error as exc:
            disconnected = dialect.is_disconnect(exc, connection, None)
            if disconnected:
                self._forget(connection)
                if retry and dropped:
                    raise _DroppedBeforeSending from exc
            raise DBAPIError.instance(sql, values, exc, dialect.loaded_dbapi.Error,
                                      connection_invalidated=disconnected, dialect=dialect) from exc


def _close_all(opened: list[tuple[int, Any]], *_: Any) -> None:
    """Close the connections this process opened (a forked child leaves its parent's alone)."""
    mine = os.getpid()
    for pid, connection in opened:
        if pid == mine:
            with contextlib.suppress(Exception):
                connection.close()
    opened.clear()


class _DroppedBeforeSending(Exception):
    """The connection was already closed by the server when the statement was sent."""
