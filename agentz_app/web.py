"""The webhook receiver: verify, store once, answer 202; process the inbox in the background.

``POST /api/github/webhooks`` never calls GitHub. Before reading a body it refuses
what it would not store (:mod:`agentz_app.ingress.limits`: address, encoding, size,
signature header) and requests past ``WEBHOOK_MAX_CONCURRENCY``; then it reads the body
within ``WEBHOOK_READ_TIMEOUT_SECONDS``, signing it as it arrives and spooling past
1 MB (:mod:`agentz_app.ingress.body`). Only a verified body is parsed: it validates the
headers and JSON, stores the raw body in the deliveries inbox (group commit, duplicates
ignored) and answers. A refusal closes the connection without reading the rest.
``/healthz`` says the process is alive, ``/readyz`` that the database answers, and
``/metrics`` serves the figures of :mod:`agentz_app.metrics`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import orjson
from aiohttp import HttpVersion11, web

from agentz_app.config import Settings
from agentz_app.github.signatures import signature_matches
from agentz_app.ingress.body import BodyTooLarge, InFlight, receive_body
from agentz_app.ingress.inbox import DeliveryWriter, InboxProcessor, InvalidDelivery, OpenGitHub, delivery_row
from agentz_app.ingress.limits import (
    MAX_BODY_BYTES,
    ReceiverLimits,
    Refusal,
    busy,
    client_address,
    refuse_address,
    refuse_headers,
)
from agentz_app.logs import get_logger
from agentz_app.metrics import install_metrics, multiproc_dir_from_env, process_github_metrics
from agentz_app.store.db import Database
from agentz_app.store.models import now

WEBHOOK_PATH = "/api/github/webhooks"
_PARSE_IN_THREAD_BYTES = 1024 * 1024
_ACCEPTED = b'{"status": "accepted"}'
_DUPLICATE = b'{"status": "duplicate"}'

SETTINGS_KEY = web.AppKey("settings", Settings)
DB_KEY = web.AppKey("db", Database)
SECRET_KEY = web.AppKey("webhook_secret", bytes)
LIMITS_KEY = web.AppKey("receiver_limits", ReceiverLimits)
IN_FLIGHT_KEY = web.AppKey("webhooks_in_flight", InFlight)
SPOOL_DIR = "spool"


@dataclass
class _Runtime:
    """Objects that exist only while the app runs (created at start-up)."""

    writer: DeliveryWriter | None = None
    processor: InboxProcessor | None = None
    spool_executor: ThreadPoolExecutor | None = None


RUNTIME_KEY = web.AppKey("runtime", _Runtime)

log = get_logger(__name__)


def _problem(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _refuse(refusal: Refusal) -> web.Response:
    """Answer without reading the body, and close the connection instead of draining it."""
    response = web.json_response({"error": refusal.message}, status=refusal.status, headers=refusal.headers)
    response.force_close()
    return response


def _refusal_before_body(request: web.Request, limits: ReceiverLimits) -> Refusal | None:
    if limits.allowed_networks:
        forwarded = request.headers.getall("X-Forwarded-For", [])
        address = client_address(request.remote, forwarded, limits.trusted_proxies)
        refusal = refuse_address(address, limits.allowed_networks)
        if refusal is not None:
            return refusal
    return refuse_headers(request.headers, max_body_bytes=limits.max_body_bytes)


async def expect_continue(request: web.Request) -> web.Response | None:
    """Answer ``Expect: 100-continue`` with the refusal instead when the body would be refused."""
    refusal = _refusal_before_body(request, request.app[LIMITS_KEY])
    if refusal is not None:
        return _refuse(refusal)
    if request.version != HttpVersion11 or request.headers.get("Expect", "").lower() != "100-continue":
        return _refuse(Refusal(417, "only Expect: 100-continue is understood"))
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0  # the interim answer is not part of the response
    return None


def _payload_text(body: bytes, content_type: str) -> str:
    """The JSON text of a delivery, from a JSON or form-encoded body."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidDelivery("body is not UTF-8") from None
    if content_type == "application/x-www-form-urlencoded":
        values = parse_qs(text, keep_blank_values=True).get("payload")
        if not values:
            raise InvalidDelivery("form body has no payload field")
        return values[0]
    return text


def _parse_object(text: str) -> dict[str, Any]:
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        # orjson refuses some JSON that Python (and so the inbox) reads: NaN, lone surrogates, deep nesting.
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            raise InvalidDelivery("body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidDelivery("body must be a JSON object")
    return data


async def receive_webhook(request: web.Request) -> web.Response:
    """Verify and store one delivery: 202 stored, 200 duplicate, 4xx invalid or refused, 5xx not stored."""
    refusal = _refusal_before_body(request, request.app[LIMITS_KEY])
    if refusal is not None:
        return _refuse(refusal)
    # The cap covers receiving and verifying, the part an outsider controls; a
    # verified delivery then waits for the group commit without holding a place.
    in_flight = request.app[IN_FLIGHT_KEY]
    length = request.content_length
    large = length is None or length > request.app[LIMITS_KEY].memory_body_bytes
    if not in_flight.try_enter(large=large):
        return _refuse(busy())
    try:
        verified = await _verified_body(request)
    finally:
        in_flight.leave(large=large)
    if isinstance(verified, web.Response):
        return verified
    return await _store(request, verified)


async def _verified_body(request: web.Request) -> bytes | web.Response:
    """The body once its signature checks out, or the answer to give instead."""
    limits = request.app[LIMITS_KEY]
    try:
        async with asyncio.timeout(limits.read_timeout):
            received = await receive_body(
                request.content,
                request.app[SECRET_KEY],
                max_bytes=limits.max_body_bytes,
                memory_bytes=limits.memory_body_bytes,
                spool_dir=request.app[SETTINGS_KEY].state_dir / SPOOL_DIR,
                declared_length=request.content_length,
                executor=request.app[RUNTIME_KEY].spool_executor,
            )
    except TimeoutError:
        return _refuse(Refusal(408, f"body not received within {limits.read_timeout:g} s"))
    except BodyTooLarge as exc:
        return _refuse(Refusal(413, str(exc)))
    try:
        if not signature_matches(received.signature, request.headers.get("X-Hub-Signature-256")):
            return _problem(401, "missing or invalid X-Hub-Signature-256")
        return await received.read()
    finally:
        received.close()


async def _store(request: web.Request, body: bytes) -> web.Response:
    """Validate a verified delivery's headers and JSON and store it once."""
    event = request.headers.get("X-GitHub-Event", "").strip()
    delivery_id = request.headers.get("X-GitHub-Delivery", "").strip()
    if not event or not delivery_id:
        return _problem(400, "X-GitHub-Event and X-GitHub-Delivery are required")
    try:
        text = _payload_text(body, request.content_type)
        if len(text) > _PARSE_IN_THREAD_BYTES:
            data = await asyncio.to_thread(_parse_object, text)
        else:
            data = _parse_object(text)
        row = delivery_row(delivery_id=delivery_id, event=event, payload_text=text, data=data, received_at=now())
    except InvalidDelivery as exc:
        return _problem(400, str(exc))
    writer = request.app[RUNTIME_KEY].writer
    if writer is None:
        return _problem(503, "receiver is starting")
    try:
        stored = await writer.submit(row)
    except Exception:  # noqa: BLE001 - the receiver answers every delivery: whatever storing raised, GitHub gets a 500 and redelivers
        log.error("delivery not stored", delivery_id=delivery_id, github_event=event)
        return _problem(500, "delivery not stored; please redeliver")
    if not stored:
        return web.Response(body=_DUPLICATE, status=200, content_type="application/json")
    return web.Response(body=_ACCEPTED, status=202, content_type="application/json")


async def healthz(_: web.Request) -> web.Response:
    """The process is alive."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """The database answers; 503 otherwise."""
    db = request.app[DB_KEY]
    if await db.run(db.ping):
        return web.json_response({"status": "ready"})
    return web.json_response({"status": "database unavailable"}, status=503)


def create_app(settings: Settings, db: Database, *, process_inbox: bool = True,
               open_github: OpenGitHub | None = None) -> web.Application:
    """Build the receiver application; with ``process_inbox`` it also works the inbox.

    ``open_github`` (from the composition root) opens the process's GitHub App for the inbox.
    """
    # Bodies are never inflated (a compressed one is refused), and a refused body is
    # not drained: the connection closes right after the answer.
    app = web.Application(client_max_size=MAX_BODY_BYTES,
                          handler_args={"auto_decompress": False, "lingering_time": 0})
    app[SETTINGS_KEY] = settings
    app[DB_KEY] = db
    app[SECRET_KEY] = settings.webhook_secret()
    app[LIMITS_KEY] = limits = ReceiverLimits.from_settings(settings)
    app[IN_FLIGHT_KEY] = InFlight(limits.max_concurrency)
    app[RUNTIME_KEY] = runtime = _Runtime()
    install_metrics(app, db, github=process_github_metrics(), webhook_path=WEBHOOK_PATH,
                    multiproc_dir=multiproc_dir_from_env())
    app.router.add_post(WEBHOOK_PATH, receive_webhook, expect_handler=expect_continue)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)

    async def background(app: web.Application) -> AsyncIterator[None]:
        writer = DeliveryWriter(db)
        processor = None
        if process_inbox:
            processor = InboxProcessor(db, settings, ingest_busy=lambda: writer.busy, open_github=open_github)
            writer.on_stored = processor.wake
        writer.start()
        # One thread signs and writes spooled bodies, so large bodies never stall the loop
        # (the group commit and the inbox's handlers run on the database's own threads).
        spool_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agentz-spool")
        runtime.writer, runtime.processor, runtime.spool_executor = writer, processor, spool_executor
        if processor is not None:
            processor.start()
        try:
            yield
        finally:
            runtime.writer = None
            await writer.stop()
            if processor is not None:
                await processor.stop()
            runtime.processor = None
            runtime.spool_executor = None
            await asyncio.to_thread(spool_executor.shutdown)

    app.cleanup_ctx.append(background)
    return app


_M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)


def limit_malloc_arenas(count: int = 2) -> None:
    """Cap glibc's per-thread malloc arenas, which otherwise grow RSS by tens of MB under load."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to tune
        ctypes.CDLL("libc.so.6").mallopt(_M_ARENA_MAX, count)


def run_receiver(settings: Settings, db: Database, *, open_github: OpenGitHub, host: str | None = None,
                 port: int | None = None) -> None:
    """Serve the receiver (with inbox processing) until interrupted; the caller owns ``db``."""
    limit_malloc_arenas()
    # Two threads are enough for parsing the rare large body (database work has threads of
    # its own); every extra thread costs memory (its stack and a malloc arena) for nothing.
    loop = asyncio.new_event_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=2, thread_name_prefix="agentz-receiver"))
    app = create_app(settings, db, open_github=open_github)
    bind_host = host or settings.receiver_host
    bind_port = settings.receiver_port if port is None else port
    log.info("receiver listening", host=bind_host, port=bind_port, path=WEBHOOK_PATH)
    web.run_app(app, host=bind_host, port=bind_port, access_log=None, print=None, loop=loop)
