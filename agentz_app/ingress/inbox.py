"""The deliveries inbox: store webhook deliveries once, then process them through the routers.

Storing uses *group commit*: request handlers hand rows to one :class:`DeliveryWriter`,
which inserts everything pending in a single transaction (duplicates ignored by the
unique ``delivery_id``) and only then answers each request. Processing claims a batch
of due deliveries atomically (a short ``next_attempt_at`` lease, ``SKIP LOCKED`` on
PostgreSQL), dispatches each through the combined router, and records success or an
error with exponential backoff. A delivery whose handler fails MAX_DELIVERY_ATTEMPTS
times becomes *dead*: it is no longer claimed, stays in the inbox for inspection
(:func:`list_deliveries`) and goes back to pending only when an operator retries it
(:func:`retry_delivery`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from typing import Any, TypeGuard

import structlog
from gidgethub import routing, sansio
from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.dml import Insert

from agentz_app.config import Settings
from agentz_app.errors import NotFound, StoreError
from agentz_app.ingress.routers import build_router
from agentz_app.logs import get_logger, redact_text
from agentz_app.store.db import Database
from agentz_app.store.models import Delivery, now
from agentz_app.store.runs import RunQueue
from agentz_app.store.single_statements import driver_rows

MAX_BATCH = 500
ARRIVAL_QUIET_SECONDS = 0.05  # the inbox processor waits for a pause this long in arriving deliveries
CLAIM_SECONDS = 120.0
BACKOFF_BASE_SECONDS = 5.0
BACKOFF_CAP_SECONDS = 600.0
MAX_ERROR_CHARS = 4000

_EVENT_LIMIT = 64
_DELIVERY_LIMIT = 64
_ACTION_LIMIT = 64
_REPO_LIMIT = 200

log = get_logger(__name__)


class InvalidDelivery(ValueError):
    """A webhook request that cannot be stored; the message says why."""


# Pure helpers ---------------------------------------------------------------------


def delivery_row(
    *, delivery_id: str, event: str, payload_text: str, data: Mapping[str, Any], received_at: float
) -> dict[str, Any]:
    """Build the inbox row for one delivery; raises InvalidDelivery for unusable headers."""
    if not _header_value(delivery_id, _DELIVERY_LIMIT):
        raise InvalidDelivery(f"X-GitHub-Delivery must be 1-{_DELIVERY_LIMIT} printable ASCII characters")
    if not _header_value(event, _EVENT_LIMIT):
        raise InvalidDelivery(f"X-GitHub-Event must be 1-{_EVENT_LIMIT} printable ASCII characters")
    action = data.get("action")
    installation = data.get("installation")
    repository = data.get("repository")
    installation_id = installation.get("id") if isinstance(installation, Mapping) else None
    full_name = repository.get("full_name") if isinstance(repository, Mapping) else None
    return {
        "delivery_id": delivery_id,
        "event": event,
        "action": action[:_ACTION_LIMIT] if _storable(action) else None,
        "installation_id": installation_id if _is_id(installation_id) else None,
        "repo": full_name if _storable(full_name) and len(full_name) <= _REPO_LIMIT else None,
        "payload": payload_text,
        "received_at": received_at,
        "next_attempt_at": received_at,
        "attempts": 0,
    }


def _header_value(value: str, limit: int) -> bool:
    return 0 < len(value) <= limit and value.isascii() and value.isprintable()


def _storable(value: object) -> TypeGuard[str]:
    """True for a string the database can store (JSON may carry lone surrogates)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63


def is_dead_after(attempts: int, max_attempts: int) -> bool:
    """True when a delivery that has now failed ``attempts`` times must not be retried again."""
    return attempts >= max_attempts


def retry_delay(attempts: int) -> float:
    """Seconds to wait before attempt ``attempts + 1``: exponential, capped at ten minutes."""
    if attempts <= 0:
        return 0.0
    return min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2.0 ** min(attempts - 1, 20))


def describe_error(exc: BaseException) -> str:
    """A short, redacted description of a handler failure for the ``error`` column."""
    text = f"{type(exc).__name__}: {exc}"
    # Messages may quote payload strings; lone surrogates there could not be stored.
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return redact_text(text)[:MAX_ERROR_CHARS]


# Storing --------------------------------------------------------------------------


@functools.cache
def _insert_delivery(*, pg: bool) -> Insert:
    """``INSERT`` one delivery unless its id is known, ``RETURNING`` the id it stored (built once)."""
    dialect_insert = postgresql.insert if pg else sqlite.insert
    return (
        dialect_insert(Delivery)
        .on_conflict_do_nothing(index_elements=["delivery_id"])
        .returning(Delivery.delivery_id)
    )


def insert_deliveries(db: Database, rows: Sequence[Mapping[str, Any]]) -> set[str]:
    """Insert rows in one transaction, ignoring known delivery ids; returns the ids stored.

    On SQLite each row goes through the same single-row statement on the driver connection:
    a multi-row ``VALUES`` (SQLAlchemy's batched ``executemany`` with ``RETURNING``) is a new
    statement for every batch size, and each connection's statement cache would keep up to
    128 of them, about 1 MB each for batches of a few hundred 10 KB deliveries. PostgreSQL
    prepares statements on the server, so there the batch goes as one ``executemany``.
    """
    if not rows:
        return set()
    statement = _insert_delivery(pg=not db.is_sqlite)
    with db.engine.begin() as connection:  # Core, not the ORM: this is the receiver's hot path
        if not db.is_sqlite:
            return set(connection.execute(statement, [dict(row) for row in rows]).scalars())
        stored: set[str] = set()
        for row in rows:
            stored.update(returned.delivery_id for returned in driver_rows(connection, statement, dict(row)))
        return stored


_Pending = tuple[dict[str, Any], "asyncio.Future[bool]"]


class DeliveryWriter:
    """Group commit: many concurrent requests, one transaction per drained batch.

    :meth:`submit` resolves to True when the delivery was stored, False when it was a
    duplicate, and raises when the database write failed (the caller answers 500 and
    GitHub redelivers).
    """

    def __init__(
        self, db: Database, *, max_batch: int = MAX_BATCH, on_stored: Callable[[], None] | None = None
    ) -> None:
        self.db = db
        self.max_batch = max_batch
        self.on_stored = on_stored
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._committing = False
        self._last_arrival = float("-inf")

    @property
    def busy(self) -> bool:
        """True while deliveries arrive or wait for a commit."""
        return (self._committing or not self._queue.empty()
                or time.monotonic() - self._last_arrival < ARRIVAL_QUIET_SECONDS)

    def start(self) -> None:
        """Start the writer task on the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="delivery-writer")

    async def stop(self) -> None:
        """Commit everything already submitted, then stop."""
        if self._task is None:
            return
        self._queue.put_nowait(None)
        await self._task
        self._task = None

    async def submit(self, row: dict[str, Any]) -> bool:
        """Queue a row for the next commit; True if stored, False if already known."""
        if self._task is None or self._task.done():
            raise RuntimeError("delivery writer is not running")
        self._last_arrival = time.monotonic()
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((row, future))
        return await future

    async def _run(self) -> None:
        stopping = False
        while not stopping:
            item = await self._queue.get()
            await asyncio.sleep(0)  # let requests already read in this loop pass join the batch
            batch: list[_Pending] = []
            while True:
                if item is None:
                    stopping = True
                else:
                    batch.append(item)
                if stopping or len(batch) >= self.max_batch:
                    break
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
            if batch:
                self._committing = True
                try:
                    await self._commit(batch)
                finally:
                    self._committing = False

    async def _commit(self, batch: list[_Pending]) -> None:
        unique: dict[str, dict[str, Any]] = {}
        for row, _ in batch:
            unique.setdefault(row["delivery_id"], row)
        try:
            stored = await self.db.run(insert_deliveries, self.db, list(unique.values()))
        except Exception as exc:  # noqa: BLE001 - group commit: whatever fails, the rows are retried one by one and every request is answered
            log.warning("delivery batch failed; retrying rows one by one", size=len(unique), error=describe_error(exc))
            await self._commit_one_by_one(batch, unique)
            return
        self._resolve(batch, stored)

    async def _commit_one_by_one(self, batch: list[_Pending], unique: dict[str, dict[str, Any]]) -> None:
        stored: set[str] = set()
        failed: dict[str, Exception] = {}
        for delivery_id, row in unique.items():
            try:
                stored |= await self.db.run(insert_deliveries, self.db, [row])
            except Exception as exc:  # noqa: BLE001 - one row that cannot be stored fails its own request, not the batch
                failed[delivery_id] = exc
                log.error("delivery not stored", delivery_id=delivery_id, error=describe_error(exc))
        self._resolve(batch, stored, failed)

    def _resolve(self, batch: list[_Pending], stored: set[str], failed: Mapping[str, Exception] | None = None) -> None:
        answered: set[str] = set()
        for row, future in batch:
            delivery_id = row["delivery_id"]
            if future.done():
                continue
            if failed and delivery_id in failed:
                future.set_exception(failed[delivery_id])
            else:
                future.set_result(delivery_id in stored and delivery_id not in answered)
                answered.add(delivery_id)
        if stored and self.on_stored is not None:
            self.on_stored()


# Processing -----------------------------------------------------------------------


@dataclass(frozen=True)
class PendingDelivery:
    """A claimed inbox row, detached from its session."""

    id: int
    delivery_id: str
    event: str
    installation_id: int | None
    payload: str
    attempts: int


def _unfinished() -> Any:
    return Delivery.processed_at.is_(None) & Delivery.dead_at.is_(None)


def _due(at: float) -> Any:
    return _unfinished() & or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= at)


def claim_pending(db: Database, *, limit: int = 100, claim_seconds: float = CLAIM_SECONDS) -> list[PendingDelivery]:
    """Atomically take up to ``limit`` due deliveries, leasing them for ``claim_seconds``."""
    stamp = now()
    with db.begin() as session:
        rows = session.scalars(
            select(Delivery).where(_due(stamp)).order_by(Delivery.id).limit(limit).with_for_update(skip_locked=True)
        ).all()
        if not rows:
            return []
        ids = [row.id for row in rows]
        session.execute(
            update(Delivery).where(Delivery.id.in_(ids)).values(next_attempt_at=stamp + claim_seconds)
        )
        return [
            PendingDelivery(row.id, row.delivery_id, row.event, row.installation_id, row.payload, row.attempts)
            for row in rows
        ]


def finish_deliveries(
    db: Database,
    *,
    done: Iterable[int],
    failed: Iterable[tuple[PendingDelivery, str]],
    released: Iterable[int] = (),
    max_attempts: int,
) -> None:
    """Mark successes processed, schedule failures for a retry (or mark them dead after
    ``max_attempts`` failures) and make released (claimed but untouched) deliveries due
    again, in one transaction."""
    done_ids = list(done)
    failures = list(failed)
    released_ids = list(released)
    if not done_ids and not failures and not released_ids:
        return
    stamp = now()
    with db.begin() as session:
        if released_ids:
            session.execute(
                update(Delivery)
                .where(Delivery.id.in_(released_ids), _unfinished())
                .values(next_attempt_at=stamp)
            )
        if done_ids:
            session.execute(
                update(Delivery)
                .where(Delivery.id.in_(done_ids), _unfinished())
                .values(processed_at=stamp, error=None)
            )
        for pending, error in failures:
            attempts = pending.attempts + 1
            if is_dead_after(attempts, max_attempts):
                schedule: dict[str, Any] = {"dead_at": stamp, "next_attempt_at": None}
            else:
                schedule = {"next_attempt_at": stamp + retry_delay(attempts)}
            session.execute(
                update(Delivery)
                .where(Delivery.id == pending.id, _unfinished())
                .values(attempts=attempts, error=error, **schedule)
            )


def next_due_at(db: Database) -> float | None:
    """When the earliest unprocessed delivery becomes due (None when the inbox is empty)."""
    with db.read() as session:
        unscheduled = session.scalar(
            select(Delivery.id).where(_unfinished(), Delivery.next_attempt_at.is_(None)).limit(1)
        )
        if unscheduled is not None:
            return now()
        value: float | None = session.scalar(select(func.min(Delivery.next_attempt_at)).where(_unfinished()))
        return value


# Dead letters ---------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryRecord:
    """An inbox row without its payload, for operators."""

    id: int
    delivery_id: str
    event: str
    action: str | None
    repo: str | None
    attempts: int
    error: str | None
    received_at: float
    processed_at: float | None
    dead_at: float | None
    next_attempt_at: float | None

    @property
    def state(self) -> str:
        """``processed``, ``dead`` or ``pending``."""
        if self.processed_at is not None:
            return "processed"
        return "dead" if self.dead_at is not None else "pending"

    @classmethod
    def from_row(cls, row: Delivery) -> DeliveryRecord:
        return cls(row.id, row.delivery_id, row.event, row.action, row.repo, row.attempts, row.error,
                   row.received_at, row.processed_at, row.dead_at, row.next_attempt_at)


_RECORD_COLUMNS = (
    Delivery.id, Delivery.delivery_id, Delivery.event, Delivery.action, Delivery.repo, Delivery.attempts,
    Delivery.error, Delivery.received_at, Delivery.processed_at, Delivery.dead_at, Delivery.next_attempt_at,
)


def list_deliveries(db: Database, *, dead_only: bool = False, limit: int = 200) -> list[DeliveryRecord]:
    """Deliveries newest first (only dead ones with ``dead_only``), without payloads."""
    query = select(*_RECORD_COLUMNS).order_by(Delivery.id.desc()).limit(limit)
    if dead_only:
        query = query.where(Delivery.dead_at.is_not(None), Delivery.processed_at.is_(None))
    with db.read() as session:
        return [DeliveryRecord(*row) for row in session.execute(query)]


def count_dead(db: Database) -> int:
    """How many deliveries are dead."""
    with db.read() as session:
        count = session.scalar(
            select(func.count()).select_from(Delivery)
            .where(Delivery.dead_at.is_not(None), Delivery.processed_at.is_(None))
        )
    return int(count or 0)


def retry_delivery(db: Database, reference: str) -> DeliveryRecord:
    """Make a dead delivery pending again with zero attempts; ``reference`` is its row id or delivery id.

    Raises NotFound for an unknown delivery and StoreError for one that is not dead.
    """
    stamp = now()
    with db.begin() as session:
        matches = [Delivery.delivery_id == reference]
        if reference.isdigit() and int(reference) < 2**63:
            matches.append(Delivery.id == int(reference))
        rows = session.scalars(select(Delivery).where(or_(*matches)).with_for_update()).all()
        if not rows:
            raise NotFound(f"delivery {reference} not found")
        if len(rows) > 1:
            raise StoreError(f"{reference} names two deliveries; use the row id from `agentz deliveries list`")
        [row] = rows
        record = DeliveryRecord.from_row(row)
        if record.state != "dead":
            raise StoreError(f"delivery {row.id} is {record.state}, not dead; only dead deliveries can be retried")
        session.execute(  # the row is locked: it is still dead
            update(Delivery).where(Delivery.id == row.id)
            .values(dead_at=None, attempts=0, error=None, next_attempt_at=stamp)
        )
    return replace(record, attempts=0, error=None, dead_at=None, next_attempt_at=stamp)


async def _client_for(github: Any, installation_id: int | None) -> Any:
    if github is None or installation_id is None:
        return None
    client = github.client(installation_id)
    if inspect.isawaitable(client):
        client = await client
    return client


async def process_pending(
    db: Database,
    settings: Settings,
    *,
    github: Any | None,
    limit: int = 100,
    router: routing.Router | None = None,
    claim_seconds: float = CLAIM_SECONDS,
    before_each: Callable[[], Awaitable[bool]] | None = None,
) -> int:
    """Process up to ``limit`` due deliveries; returns how many were claimed.

    ``before_each`` is awaited before every delivery (the receiver uses it to let
    webhook ingestion go first); when it returns False the rest of the batch is
    released for immediate pickup and processing stops.
    """
    if router is None:
        router = build_router()
    batch = await db.run(claim_pending, db, limit=limit, claim_seconds=claim_seconds)
    if not batch:
        return 0
    queue = RunQueue(db, lease_seconds=settings.lease_seconds)
    done: list[int] = []
    failed: list[tuple[PendingDelivery, str]] = []
    released: list[int] = []
    for index, pending in enumerate(batch):
        if before_each is not None and not await before_each():
            released = [rest.id for rest in batch[index:]]
            break
        with structlog.contextvars.bound_contextvars(delivery_id=pending.delivery_id, github_event=pending.event):
            try:
                data = json.loads(pending.payload)
                event = sansio.Event(data, event=pending.event, delivery_id=pending.delivery_id)
                gh = await _client_for(github, pending.installation_id)
                await router.dispatch(event, gh, db=db, settings=settings, queue=queue)
            except Exception as exc:
                error = describe_error(exc)
                failed.append((pending, error))
                attempts = pending.attempts + 1
                if is_dead_after(attempts, settings.max_delivery_attempts):
                    log.error("delivery is dead; retry it with `agentz deliveries retry`", attempts=attempts,
                              error=error, exc_info=True)
                else:
                    log.warning("delivery processing failed", attempts=attempts, retry_in=retry_delay(attempts),
                                error=error, exc_info=True)
            else:
                done.append(pending.id)
                log.debug("delivery processed", action=data.get("action") if isinstance(data, dict) else None)
    await db.run(finish_deliveries, db, done=done, failed=failed, released=released,
                 max_attempts=settings.max_delivery_attempts)
    return len(batch)


# Opens the process's GitHub App (None when not configured) for the processor's loop.
OpenGitHub = Callable[[], AbstractAsyncContextManager[Any | None]]


@contextlib.asynccontextmanager
async def _without_github() -> AsyncIterator[None]:
    yield None


class InboxProcessor:
    """Processes the inbox in a task on the receiver's own loop: handlers run their database
    work on database threads (:meth:`Database.run`), so it never stalls request handling.

    ``open_github`` (from the composition root) opens the process's one GitHub App and its
    HTTP session; it yields None when the App is not configured, and handlers then get no
    client.

    :meth:`wake` asks for a pass now; otherwise the processor polls every
    ``poll_seconds`` and when the earliest retry falls due. While ``ingest_busy()``
    says deliveries are arriving, claiming a batch and each delivery wait (at most
    ``max_defer_seconds``), so a burst is acknowledged first and processed right after.
    """

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        batch_size: int = 100,
        poll_seconds: float = 15.0,
        router: routing.Router | None = None,
        ingest_busy: Callable[[], bool] | None = None,
        max_defer_seconds: float = 0.5,
        open_github: OpenGitHub | None = None,
    ) -> None:
        self.db = db
        self.open_github = open_github or _without_github
        self.ingest_busy = ingest_busy
        self.max_defer_seconds = max_defer_seconds
        self.settings = settings
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.router = router
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._stopping = False

    def start(self) -> None:
        """Start processing in a task on the running loop."""
        if self._task is not None:
            return
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self._run(), name="agentz-inbox")

    def wake(self) -> None:
        """Ask for a processing pass now."""
        self._wakeup.set()

    async def stop(self, grace_seconds: float = 30.0) -> None:
        """Finish the current delivery, release the rest of the batch and stop (cancelled after ``grace_seconds``)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self.wake()
        try:
            async with asyncio.timeout(grace_seconds):  # cancels the task when it does not end in time
                await task
        except TimeoutError:
            log.warning("inbox processing did not stop in time; cancelled", grace_seconds=grace_seconds)

    async def _run(self) -> None:
        router = self.router or build_router()
        async with self.open_github() as github:
            while not self._stopping:
                self._wakeup.clear()
                claimed = 0
                if not await self._defer_to_ingest():  # claim nothing while a burst is being stored
                    break
                try:
                    claimed = await process_pending(
                        self.db,
                        self.settings,
                        github=github,
                        limit=self.batch_size,
                        router=router,
                        before_each=self._defer_to_ingest,
                    )
                except Exception as exc:  # noqa: BLE001 - the inbox loop: a failed pass is logged and the next one runs
                    log.error("inbox pass failed", error=describe_error(exc))
                if claimed >= self.batch_size or self._stopping:
                    continue
                await self._sleep()

    async def _defer_to_ingest(self) -> bool:
        if self.ingest_busy is not None:
            deadline = time.monotonic() + self.max_defer_seconds
            # The writer reports a pause in arrivals, a time window: there is no event to wait on.
            while self.ingest_busy() and time.monotonic() < deadline and not self._stopping:  # noqa: ASYNC110
                await asyncio.sleep(ARRIVAL_QUIET_SECONDS / 2)
        return not self._stopping

    async def _sleep(self) -> None:
        timeout = self.poll_seconds
        with contextlib.suppress(Exception):
            due = await self.db.run(next_due_at, self.db)
            if due is not None:
                timeout = min(timeout, max(0.05, due - now()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout)
