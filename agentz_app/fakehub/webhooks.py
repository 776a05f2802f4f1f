"""Signed webhook delivery with retries, a delivery log and injected delivery faults."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from agentz_app.fakehub.faults import FaultInjector
from agentz_app.fakehub.state import HubState, Record, iso

HOOK_ID = 1


def sign(secret: bytes, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value for ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def delivery_headers(*, event: str, guid: str, signature: str, app_id: int) -> dict[str, str]:
    """The headers GitHub sends with a webhook delivery."""
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/fake",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": guid,
        "X-GitHub-Hook-ID": str(HOOK_ID),
        "X-GitHub-Hook-Installation-Target-ID": str(app_id),
        "X-GitHub-Hook-Installation-Target-Type": "integration",
        "X-Hub-Signature-256": signature,
    }


@dataclass
class _Job:
    event: str
    guid: str
    body: bytes
    action: str | None
    installation_id: int | None
    repository_id: int | None
    redelivery: bool = False
    allow_faults: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


class WebhookEmitter:
    """Send events one by one, in order, to the receiver; record every attempt."""

    def __init__(
        self,
        state: HubState,
        *,
        url: str | None,
        secret: str,
        app_id: int,
        faults: FaultInjector,
        on_change: Callable[[], None],
        max_attempts: int = 4,
        backoff_seconds: float = 0.05,
        hold_seconds: float = 0.2,
    ) -> None:
        self.state = state
        self.url = url
        self.secret = secret
        self.app_id = app_id
        self.faults = faults
        self.on_change = on_change
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.hold_seconds = hold_seconds
        self.emitted: list[Record] = []
        self._queue: asyncio.Queue[_Job] = asyncio.Queue()
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Start the delivery loop."""
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        self._task = asyncio.create_task(self._run(), name="fakehub-webhooks")

    async def stop(self) -> None:
        """Stop the loop and close the HTTP session; undelivered jobs are dropped."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._count(-self._pending)

    @property
    def pending(self) -> int:
        """Deliveries queued or in flight."""
        return self._pending

    def emit(self, event: str, payload: Record) -> str:
        """Queue one event for delivery and return its GUID."""
        guid = str(uuid.uuid4())
        body = json.dumps(payload, separators=(",", ":")).encode()
        installation = payload.get("installation") or {}
        repository = payload.get("repository") or {}
        self.emitted.append({"event": event, "action": payload.get("action"), "guid": guid, "payload": payload})
        if self.url is None:
            return guid
        self._enqueue(_Job(event, guid, body, payload.get("action"), installation.get("id"), repository.get("id")))
        return guid

    def redeliver(self, delivery_id: int) -> None:
        """Queue a redelivery of a recorded delivery (same GUID and body, ``redelivery: true``)."""
        rec = self.state.by_id("deliveries", delivery_id)
        self._enqueue(_Job(rec["event"], rec["guid"], rec["body"].encode(), rec.get("action"),
                           rec.get("installation_id"), rec.get("repository_id"), redelivery=True,
                           allow_faults=False))

    async def wait_idle(self) -> None:
        """Wait until nothing is queued or in flight (bound the wait with ``asyncio.timeout``)."""
        await self._idle.wait()

    def _count(self, delta: int) -> None:
        """Adjust the deliveries queued or in flight; :meth:`wait_idle` wakes when none are left."""
        self._pending += delta
        if self._pending:
            self._idle.clear()
        else:
            self._idle.set()

    def _enqueue(self, job: _Job) -> None:
        self._count(1)
        self._queue.put_nowait(job)

    async def _run(self) -> None:
        held: _Job | None = None
        while True:
            if held is None:
                job = await self._queue.get()
            else:
                try:
                    job = await asyncio.wait_for(self._queue.get(), self.hold_seconds)
                except TimeoutError:
                    job, held = held, None
                    await self._deliver(job)
                    continue
            fault = self.faults.delivery_fault() if job.allow_faults else None
            if fault == "out_of_order" and held is None:
                held = job
                continue
            await self._process(job, fault)
            if held is not None:
                job, held = held, None
                await self._deliver(job)

    async def _process(self, job: _Job, fault: str | None) -> None:
        if fault == "drop":
            self._record(job, status_code=502, status="failed to connect", duration=0.0, redelivery=False)
            self._count(-1)
            return
        if fault == "duplicate":
            self._count(1)
            await self._deliver(job)
        await self._deliver(job)

    async def _deliver(self, job: _Job) -> None:
        try:
            for attempt in range(self.max_attempts):
                if attempt:
                    await asyncio.sleep(self.backoff_seconds * 2 ** (attempt - 1))
                if await self._attempt(job, redelivery=job.redelivery or attempt > 0):
                    return
        finally:
            self._count(-1)

    async def _attempt(self, job: _Job, *, redelivery: bool) -> bool:
        assert self._session is not None
        assert self.url is not None
        headers = delivery_headers(event=job.event, guid=job.guid, signature=sign(self.secret.encode(), job.body),
                                   app_id=self.app_id)
        started = time.monotonic()
        try:
            async with self._session.post(self.url, data=job.body, headers=headers) as response:
                await response.read()
                code = response.status
                status = "OK" if code < 300 else f"Invalid HTTP Response: {code}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            code, status = 0, f"failed to connect: {type(exc).__name__}"
        self._record(job, status_code=code, status=status, duration=time.monotonic() - started, redelivery=redelivery)
        return 200 <= code < 300

    def _record(self, job: _Job, *, status_code: int, status: str, duration: float, redelivery: bool) -> None:
        delivery_id = self.state.new_id()
        self.state.data["deliveries"][str(delivery_id)] = {
            "id": delivery_id,
            "guid": job.guid,
            "delivered_at": iso(time.time()),
            "redelivery": redelivery,
            "duration": round(duration, 3),
            "status": status,
            "status_code": status_code,
            "event": job.event,
            "action": job.action,
            "installation_id": job.installation_id,
            "repository_id": job.repository_id,
            "throttled_at": None,
            "body": job.body.decode(),
        }
        self.on_change()
