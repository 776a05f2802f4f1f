from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
import structlog
from gidgethub import routing, sansio
from sqlalchemy import event, select, update

from agentz_app.config import Settings
from agentz_app.errors import NotFound, StoreError
from agentz_app.ingress.inbox import (
    BACKOFF_CAP_SECONDS,
    DeliveryWriter,
    InboxProcessor,
    claim_pending,
    count_dead,
    delivery_row,
    insert_deliveries,
    list_deliveries,
    next_due_at,
    process_pending,
    retry_delay,
    retry_delivery,
)
from agentz_app.store.db import Database
from agentz_app.store.models import Delivery, now
from tests.waiting import wait_for


def row(delivery_id: str, event: str = "issues", data: dict[str, Any] | None = None) -> dict[str, Any]:
    data = data if data is not None else {"action": "opened", "installation": {"id": 42}}
    return delivery_row(
        delivery_id=delivery_id, event=event, payload_text=json.dumps(data), data=data, received_at=now()
    )


def deliveries(db: Database) -> dict[str, Delivery]:
    with db.read() as session:
        return {d.delivery_id: d for d in session.scalars(select(Delivery))}


class Recorder:
    """A feature router whose handler records calls and fails while ``failing`` is set."""

    def __init__(self) -> None:
        self.router = routing.Router()
        self.calls: list[tuple[str, Any, dict[str, Any]]] = []
        self.failing = False
        self.router.add(self.handle, "issues")

    async def handle(self, event: sansio.Event, gh: Any, **deps: Any) -> None:
        self.calls.append((event.delivery_id, gh, {**deps, "log": structlog.contextvars.get_contextvars()}))
        if self.failing:
            raise RuntimeError("handler broke")


def test_insert_ignores_known_delivery_ids(db: Database) -> None:
    assert insert_deliveries(db, [row("a"), row("b")]) == {"a", "b"}
    assert insert_deliveries(db, [row("b"), row("c")]) == {"c"}
    assert sorted(deliveries(db)) == ["a", "b", "c"]


def test_sqlite_group_commit_sends_every_batch_size_through_one_single_row_statement(sqlite_db: Database) -> None:
    # A multi-row VALUES per batch size would leave one prepared statement per size in each
    # connection's statement cache (the receiver's memory grew by about 1 MB per size).
    inserts: list[str] = []

    def trace(dbapi_connection: Any, _: Any) -> None:
        dbapi_connection.set_trace_callback(
            lambda sql: inserts.append(sql) if sql.lstrip().upper().startswith("INSERT INTO DELIVERIES") else None)

    event.listen(sqlite_db.engine, "connect", trace)
    sqlite_db.engine.dispose()  # connections opened from now on are traced
    sizes = [1, 2, 5, 3]
    for batch, size in enumerate(sizes):
        stored = insert_deliveries(sqlite_db, [row(f"b{batch}-{index}") for index in range(size)])
        assert len(stored) == size
    assert len(inserts) == sum(sizes)
    assert all(statement.count("VALUES (") == 1 for statement in inserts)


async def test_writer_commits_concurrent_submissions_and_flags_duplicates(db: Database) -> None:
    wakes: list[int] = []
    writer = DeliveryWriter(db, max_batch=16, on_stored=lambda: wakes.append(1))
    writer.start()
    try:
        results = await asyncio.gather(*(writer.submit(row(f"d-{i % 50}")) for i in range(100)))
    finally:
        await writer.stop()
    assert results.count(True) == 50
    assert results.count(False) == 50
    assert len(deliveries(db)) == 50
    assert wakes


async def test_writer_fails_only_the_rows_that_cannot_be_stored(db: Database) -> None:
    writer = DeliveryWriter(db)
    writer.start()
    bad = row("bad")
    bad["event"] = None  # violates NOT NULL: this row alone must fail
    try:
        results = await asyncio.gather(writer.submit(row("good")), writer.submit(bad), return_exceptions=True)
    finally:
        await writer.stop()
    assert results[0] is True
    assert isinstance(results[1], Exception)
    assert sorted(deliveries(db)) == ["good"]


async def test_pending_delivery_is_dispatched_once_with_its_dependencies(db: Database, settings: Settings) -> None:
    recorder = Recorder()
    insert_deliveries(db, [row("a")])
    assert await process_pending(db, settings, github=None, router=recorder.router) == 1
    assert await process_pending(db, settings, github=None, router=recorder.router) == 0
    [(delivery_id, gh, deps)] = recorder.calls
    assert (delivery_id, gh) == ("a", None)
    assert deps["db"] is db
    assert deps["settings"] is settings
    assert deps["queue"].leases.lease_seconds == settings.lease_seconds
    assert deps["log"]["delivery_id"] == "a"
    stored = deliveries(db)["a"]
    assert stored.processed_at is not None
    assert stored.error is None


async def test_handlers_get_a_client_for_the_deliverys_installation(db: Database, settings: Settings) -> None:
    class FakeApp:
        def __init__(self) -> None:
            self.asked: list[int] = []

        def client(self, installation_id: int) -> str:
            self.asked.append(installation_id)
            return f"client-{installation_id}"

    app = FakeApp()
    recorder = Recorder()
    insert_deliveries(db, [row("with"), row("without", data={"action": "opened"})])
    await process_pending(db, settings, github=app, router=recorder.router)
    assert {call[0]: call[1] for call in recorder.calls} == {"with": "client-42", "without": None}
    assert app.asked == [42]


async def test_failing_handler_leaves_the_delivery_unprocessed_and_it_is_retried_later(
    db: Database, settings: Settings
) -> None:
    recorder = Recorder()
    recorder.failing = True
    insert_deliveries(db, [row("a")])
    before = now()
    assert await process_pending(db, settings, github=None, router=recorder.router) == 1
    failed = deliveries(db)["a"]
    assert failed.processed_at is None
    assert failed.attempts == 1
    assert failed.error == "RuntimeError: handler broke"
    assert failed.next_attempt_at is not None
    assert failed.next_attempt_at >= before + retry_delay(1)

    # Not due yet: nothing is claimed.
    assert await process_pending(db, settings, github=None, router=recorder.router) == 0

    recorder.failing = False
    with db.begin() as session:
        session.execute(update(Delivery).values(next_attempt_at=now() - 1))
    assert await process_pending(db, settings, github=None, router=recorder.router) == 1
    done = deliveries(db)["a"]
    assert done.processed_at is not None
    assert done.error is None
    assert done.attempts == 1
    assert [call[0] for call in recorder.calls] == ["a", "a"]


def test_retry_delay_grows_exponentially_and_is_capped() -> None:
    delays = [retry_delay(attempt) for attempt in range(1, 40)]
    assert delays == sorted(delays)
    assert delays[1] == 2 * delays[0]
    assert max(delays) == BACKOFF_CAP_SECONDS


def test_a_claimed_batch_is_not_claimed_again_until_its_lease_expires(db: Database) -> None:
    insert_deliveries(db, [row(f"d-{i}") for i in range(5)])
    first = claim_pending(db, limit=3, claim_seconds=60)
    second = claim_pending(db, limit=10, claim_seconds=60)
    assert len(first) == 3
    assert len(second) == 2
    assert not {d.id for d in first} & {d.id for d in second}
    assert claim_pending(db, limit=10) == []
    with db.begin() as session:
        session.execute(update(Delivery).values(next_attempt_at=now() - 1))
    assert len(claim_pending(db, limit=10)) == 5


def test_concurrent_claimers_never_share_a_delivery(db: Database) -> None:
    insert_deliveries(db, [row(f"d-{i}") for i in range(60)])
    claimed: list[list[int]] = []
    lock = threading.Lock()

    def claimer() -> None:
        while batch := claim_pending(db, limit=4):
            with lock:
                claimed.append([d.id for d in batch])

    threads = [threading.Thread(target=claimer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [delivery for batch in claimed for delivery in batch]
    assert len(ids) == 60
    assert len(set(ids)) == 60


async def test_background_processor_wakes_on_new_deliveries(db: Database, settings: Settings) -> None:
    recorder = Recorder()
    processor = InboxProcessor(db, settings, poll_seconds=60, router=recorder.router)
    processor.start()
    try:
        insert_deliveries(db, [row("woken")])
        processor.wake()
        await wait_for(lambda: deliveries(db)["woken"].processed_at is not None, timeout=10,
                       what="the woken delivery processed")
    finally:
        await processor.stop()
    assert deliveries(db)["woken"].processed_at is not None
    assert [call[0] for call in recorder.calls] == ["woken"]


async def test_the_processor_runs_handlers_on_the_receivers_own_loop(db: Database, settings: Settings) -> None:
    seen: list[tuple[asyncio.AbstractEventLoop, threading.Thread]] = []
    router = routing.Router()

    async def handle(event: sansio.Event, gh: Any, **_: Any) -> None:
        seen.append((asyncio.get_running_loop(), threading.current_thread()))

    router.add(handle, "issues")
    processor = InboxProcessor(db, settings, poll_seconds=60, router=router)
    processor.start()
    try:
        await db.run(insert_deliveries, db, [row("here")])
        processor.wake()
        await wait_for(lambda: seen, timeout=10, what="the delivery handled")
    finally:
        await processor.stop()
    assert seen == [(asyncio.get_running_loop(), threading.current_thread())]
    assert not [thread for thread in threading.enumerate() if thread.name == "agentz-inbox"]


async def test_stopping_mid_batch_makes_the_untouched_deliveries_due_again(db: Database, settings: Settings) -> None:
    recorder = Recorder()
    insert_deliveries(db, [row("first"), row("second"), row("third")])
    allowed = iter([True, False])

    async def before_each() -> bool:
        return next(allowed)

    assert await process_pending(db, settings, github=None, router=recorder.router, before_each=before_each) == 3
    stored = deliveries(db)
    assert stored["first"].processed_at is not None
    for name in ("second", "third"):
        untouched = stored[name]
        assert untouched.processed_at is None
        assert untouched.attempts == 0
        assert untouched.next_attempt_at is not None
        assert untouched.next_attempt_at <= now()
    assert await process_pending(db, settings, github=None, router=recorder.router) == 2
    assert [call[0] for call in recorder.calls] == ["first", "second", "third"]


async def test_background_processor_lets_busy_ingestion_go_first(db: Database, settings: Settings) -> None:
    recorder = Recorder()
    busy = threading.Event()
    busy.set()
    asked: list[bool] = []

    def ingest_busy() -> bool:
        asked.append(busy.is_set())
        return asked[-1]

    processor = InboxProcessor(
        db, settings, poll_seconds=60, router=recorder.router, ingest_busy=ingest_busy, max_defer_seconds=30
    )
    processor.start()
    try:
        insert_deliveries(db, [row("burst")])
        processor.wake()
        await wait_for(lambda: asked.count(True) >= 3, timeout=10, what="the processor to defer three times")
        assert recorder.calls == []  # still deferring to the burst
        busy.clear()
        await wait_for(lambda: deliveries(db)["burst"].processed_at is not None, timeout=10,
                       what="the burst delivery processed")
    finally:
        await processor.stop()
    assert [call[0] for call in recorder.calls] == ["burst"]


def make_due(db: Database) -> None:
    """Let the retry time of every waiting delivery pass."""
    with db.begin() as session:
        session.execute(update(Delivery).where(Delivery.next_attempt_at.is_not(None)).values(next_attempt_at=now() - 1))


async def fail_until_dead(db: Database, settings: Settings, recorder: Recorder, attempts: int) -> None:
    recorder.failing = True
    for _ in range(attempts):
        make_due(db)
        assert await process_pending(db, settings, github=None, router=recorder.router) == 1


async def test_a_delivery_failing_max_attempts_times_is_dead_and_never_processed_again(
    db: Database, settings: Settings
) -> None:
    settings = settings.model_copy(update={"max_delivery_attempts": 3})
    recorder = Recorder()
    insert_deliveries(db, [row("doomed")])
    await fail_until_dead(db, settings, recorder, 2)
    waiting = deliveries(db)["doomed"]
    assert waiting.dead_at is None
    assert waiting.next_attempt_at is not None  # two failures: backing off
    await fail_until_dead(db, settings, recorder, 1)
    dead = deliveries(db)["doomed"]
    assert dead.dead_at is not None
    assert dead.processed_at is None
    assert (dead.attempts, dead.error, dead.next_attempt_at) == (3, "RuntimeError: handler broke", None)

    insert_deliveries(db, [row("fine")])
    make_due(db)
    with db.begin() as session:  # even a stale retry time must not bring it back
        session.execute(update(Delivery).where(Delivery.delivery_id == "doomed").values(next_attempt_at=1.0))
    recorder.failing = False
    assert await process_pending(db, settings, github=None, router=recorder.router) == 1  # only "fine"
    assert await process_pending(db, settings, github=None, router=recorder.router) == 0
    assert [call[0] for call in recorder.calls] == ["doomed"] * 3 + ["fine"]
    assert next_due_at(db) is None  # the processor does not keep waking for it
    assert count_dead(db) == 1
    assert [(d.delivery_id, d.state) for d in list_deliveries(db, dead_only=True)] == [("doomed", "dead")]
    assert {d.delivery_id: d.state for d in list_deliveries(db)} == {"doomed": "dead", "fine": "processed"}


async def test_retrying_a_dead_delivery_processes_it_exactly_once_more(db: Database, settings: Settings) -> None:
    settings = settings.model_copy(update={"max_delivery_attempts": 2})
    recorder = Recorder()
    insert_deliveries(db, [row("doomed")])
    await fail_until_dead(db, settings, recorder, 2)
    dead_id = deliveries(db)["doomed"].id

    retried = retry_delivery(db, str(dead_id))
    assert (retried.state, retried.attempts, retried.error) == ("pending", 0, None)
    assert count_dead(db) == 0
    recorder.failing = False
    assert await process_pending(db, settings, github=None, router=recorder.router) == 1
    assert await process_pending(db, settings, github=None, router=recorder.router) == 0
    assert [call[0] for call in recorder.calls] == ["doomed"] * 3
    done = deliveries(db)["doomed"]
    assert done.processed_at is not None
    assert done.dead_at is None
    assert done.attempts == 0


async def test_a_retried_delivery_that_fails_again_gets_all_its_attempts_back(
    db: Database, settings: Settings
) -> None:
    settings = settings.model_copy(update={"max_delivery_attempts": 2})
    recorder = Recorder()
    insert_deliveries(db, [row("doomed")])
    await fail_until_dead(db, settings, recorder, 2)
    retry_delivery(db, "doomed")  # by GitHub's delivery id
    await fail_until_dead(db, settings, recorder, 1)
    assert deliveries(db)["doomed"].dead_at is None
    await fail_until_dead(db, settings, recorder, 1)
    assert deliveries(db)["doomed"].dead_at is not None


async def test_only_a_dead_delivery_can_be_retried(db: Database, settings: Settings) -> None:
    recorder = Recorder()
    insert_deliveries(db, [row("pending"), row("done")])
    with db.begin() as session:
        session.execute(update(Delivery).where(Delivery.delivery_id == "done").values(processed_at=now()))
    with pytest.raises(NotFound):
        retry_delivery(db, "nope")
    with pytest.raises(NotFound):
        retry_delivery(db, "99999")
    with pytest.raises(StoreError, match="pending, not dead"):
        retry_delivery(db, "pending")
    with pytest.raises(StoreError, match="processed, not dead"):
        retry_delivery(db, str(deliveries(db)["done"].id))
    assert await process_pending(db, settings, github=None, router=recorder.router) == 1
