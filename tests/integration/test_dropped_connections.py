"""The claim path's own PostgreSQL connections: not pinged, replaced when dropped, closed with the engine."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from agentz_app.domain.states import CLAIMABLE_BY_PLANNER, Status
from agentz_app.store.db import Database
from agentz_app.store.migrate import migrate
from agentz_app.store.runs import RunQueue
from agentz_app.store.single_statements import SingleStatements
from tests.fakes import FakeClock

pytestmark = pytest.mark.postgres


@pytest.fixture
def one_connection(postgres_url: str) -> Iterator[Database]:
    """A migrated PostgreSQL database with a pool of one connection."""
    database = Database.from_url(postgres_url, pool_size=1)
    migrate(database)
    yield database
    database.dispose()


@pytest.fixture
def admin(postgres_url: str) -> Iterator[Database]:
    database = Database.from_url(postgres_url)
    yield database
    database.dispose()


def _backend(direct: SingleStatements) -> int:
    """The server process behind the calling thread's claim-path connection."""
    [row] = direct.rows(select(func.pg_backend_pid().label("pid")), {})
    return int(row.pid)


def _terminate(admin: Database, pid: int) -> None:
    """End the server process ``pid`` and wait (up to 10 s) until it has exited."""
    with admin.engine.connect() as connection:
        assert connection.execute(text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": pid}).scalar_one()


def test_the_claim_after_the_server_dropped_the_connection_succeeds(one_connection: Database, admin: Database) -> None:
    queue = RunQueue(one_connection, clock=FakeClock())
    first, _ = queue.intake.enqueue("o/r", 1)
    second, _ = queue.intake.enqueue("o/r", 2)
    [taken] = queue.leases.take("w1", statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING)
    before = _backend(queue.leases.single_statements)
    _terminate(admin, before)

    [next_taken] = queue.leases.take("w1", statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING)

    assert {taken.run_id, next_taken.run_id} == {first.id, second.id}
    assert _backend(queue.leases.single_statements) != before
    _terminate(admin, _backend(queue.leases.single_statements))
    moved = queue.moves.complete(next_taken.lease, Status.CANCELLED)
    assert (moved.run_id, moved.status) == (next_taken.run_id, "cancelled")
    assert [e.kind for e in queue.reads.events(next_taken.run_id)].count("claimed") == 1


def test_a_statement_the_server_dropped_while_running_is_not_sent_again(one_connection: Database,
                                                                          admin: Database) -> None:
    direct = SingleStatements(one_connection.engine)
    pid = _backend(direct)
    started = threading.Event()

    def terminate_once_running() -> None:
        deadline = time.monotonic() + 30
        with admin.engine.connect() as connection:
            while time.monotonic() < deadline:
                state = connection.execute(text("SELECT state FROM pg_stat_activity WHERE pid = :pid"),
                                           {"pid": pid}).scalar()
                connection.commit()
                if state == "active":
                    break
                started.wait(0.01)
            else:
                raise AssertionError("the statement never started")
        _terminate(admin, pid)

    killer = threading.Thread(target=terminate_once_running)
    killer.start()
    with pytest.raises(DBAPIError) as raised:
        direct.rows(text("SELECT pg_sleep(30), pg_backend_pid() AS pid"), {})
    killer.join()
    assert raised.value.connection_invalidated
    assert _backend(direct) != pid  # the dropped connection was replaced


def test_disposing_the_database_closes_the_claim_path_connections(postgres_url: str, admin: Database) -> None:
    db = Database.from_url(postgres_url)
    migrate(db)
    queue = RunQueue(db, clock=FakeClock())
    queue.intake.enqueue("o/r", 1)
    queue.leases.take("w1", statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING)
    pid = _backend(queue.leases.single_statements)
    db.dispose()
    deadline = time.monotonic() + 30
    with admin.engine.connect() as connection:
        while connection.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"),
                                 {"pid": pid}).scalar_one():
            connection.commit()
            assert time.monotonic() < deadline, "the claim path's connection is still open"
            threading.Event().wait(0.01)
