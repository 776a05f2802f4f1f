"""One database concurrency model: units of work run on database threads, never on an event loop's thread."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from sqlalchemy import func, select, text
from structlog.testing import capture_logs

from agentz_app.store.db import Database, SqlOnEventLoop
from agentz_app.store.models import Delivery


def count_deliveries(db: Database) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(Delivery)) or 0)


def add_delivery(db: Database, delivery_id: str) -> str:
    with db.begin() as session:
        session.add(Delivery(delivery_id=delivery_id, event="issues", payload="{}"))
    return threading.current_thread().name


APP_FILE = "/srv/agentz_app/somewhere.py"
APP_SOURCE = """
def count_stored(db):
    with db.read() as session:
        return session.scalar(select(func.count()).select_from(Delivery))

def store(db, delivery_id):
    with db.begin() as session:
        session.add(Delivery(delivery_id=delivery_id, event="issues", payload="{}"))

async def read_on_the_loop(db):
    return count_stored(db)

async def write_on_the_loop(db):
    store(db, "on-the-loop")

async def harness(check):
    return check()
"""


def application() -> dict[str, Any]:
    """Functions as if Agent-Z defined them in APP_FILE (outside the test suite)."""
    namespace: dict[str, Any] = {"select": select, "func": func, "Delivery": Delivery}
    exec(compile(APP_SOURCE, APP_FILE, "exec"), namespace)
    return namespace


async def test_sql_from_an_application_coroutine_fails_naming_the_statement_and_the_coroutine(db: Database) -> None:
    refusal = r"SQL on the event loop's thread \((BEGIN|SELECT count)"
    with pytest.raises(SqlOnEventLoop, match=refusal) as refused:
        await application()["read_on_the_loop"](db)
    # SQLite's BEGIN comes first: the coroutine says where.
    assert refused.value.coroutine == f"read_on_the_loop ({APP_FILE}:11)"


async def test_a_refused_write_leaves_nothing_behind_and_the_database_usable(db: Database) -> None:
    with pytest.raises(SqlOnEventLoop):
        await application()["write_on_the_loop"](db)
    assert await db.run(count_deliveries, db) == 0
    await db.run(add_delivery, db, "off-the-loop")
    assert await db.run(count_deliveries, db) == 1


async def test_a_tests_own_coroutines_may_seed_and_inspect_the_database_directly(db: Database) -> None:
    add_delivery(db, "seeded")
    assert count_deliveries(db) == 1


async def test_a_tests_callback_run_by_an_application_coroutine_may_inspect_the_database(db: Database) -> None:
    app = application()
    assert await app["harness"](lambda: app["count_stored"](db)) == 0


async def test_run_carries_out_the_unit_of_work_on_a_database_thread(db: Database) -> None:
    thread_name = await db.run(add_delivery, db, "d-1")
    assert thread_name.startswith("agentz-db")
    assert thread_name != threading.current_thread().name
    assert await db.run(count_deliveries, db) == 1


async def test_concurrent_units_of_work_each_get_their_own_session(db: Database) -> None:
    ids = [f"d-{index}" for index in range(40)]
    await asyncio.gather(*(db.run(add_delivery, db, delivery_id) for delivery_id in ids))
    assert await db.run(count_deliveries, db) == len(ids)


async def test_run_passes_keyword_arguments_and_raises_the_function_error(db: Database) -> None:
    def fail(*, reason: str) -> None:
        raise ValueError(reason)

    with pytest.raises(ValueError, match="bad input"):
        await db.run(fail, reason="bad input")


def test_sql_outside_any_event_loop_is_allowed(db: Database) -> None:
    add_delivery(db, "plain-thread")
    assert count_deliveries(db) == 1


@pytest.fixture
def every_log_level() -> Iterator[None]:
    """Let warnings through whatever level an earlier test configured; restore its configuration after."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    yield
    structlog.configure(**saved)


@pytest.mark.usefixtures("every_log_level")
async def test_engines_log_sql_on_the_event_loop_once_per_place(sqlite_db: Database) -> None:
    with capture_logs() as logs:  # a test's coroutine passes the guard, so only the engine's own warning shows
        for _ in range(3):
            with sqlite_db.read() as session:
                session.execute(text("SELECT 1"))
        count_deliveries(sqlite_db)
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert [entry["statement"] for entry in warnings] == ["BEGIN", "BEGIN"]  # SQLite's BEGIN comes first
    first, second = (entry["coroutine"] for entry in warnings)
    assert first.startswith("test_engines_log_sql_on_the_event_loop_once_per_place")
    assert __file__ in first
    assert second != first
