"""The receiver's limits, attacked through a real aiohttp server on a real socket (real SQLite).

Requests go over raw connections where a client library would be too polite: headers
without the body, a body one piece at a time, or more body than the server wants.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import ipaddress
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpClient
from sqlalchemy import select

from agentz_app.config import Settings
from agentz_app.github.signatures import sign
from agentz_app.ingress.limits import MAX_BODY_BYTES
from agentz_app.store.db import Database
from agentz_app.store.models import Delivery
from agentz_app.web import IN_FLIGHT_KEY, WEBHOOK_PATH, create_app
from tests.waiting import wait_for
from tests.web_client import AppClient

SECRET = b"test-secret"
BODY = json.dumps({"action": "opened", "issue": {"number": 7}, "repository": {"full_name": "acme/app"}}).encode()
_GUARD = 20.0  # only stops a broken server from hanging the test


def stored(db: Database) -> list[Delivery]:
    with db.read() as session:
        return list(session.scalars(select(Delivery).order_by(Delivery.id)))


def delivery_headers(body: bytes, delivery: str = "d-1", **extra: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": "issues",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": sign(SECRET, body),
        **extra,
    }


def head(headers: dict[str, str]) -> bytes:
    lines = [f"POST {WEBHOOK_PATH} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class RawRequest:
    """One request on its own connection, written piece by piece; the answer is read as it comes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.answer: asyncio.Task[int] = asyncio.create_task(self._status())

    @classmethod
    async def open(cls, client: AppClient, headers: dict[str, str]) -> RawRequest:
        reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
        request = cls(reader, writer)
        await request.send(head(headers))
        return request

    async def _status(self) -> int:
        line = await self.reader.readline()
        return int(line.split()[1]) if line else 0

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def status(self) -> int:
        return await asyncio.wait_for(self.answer, _GUARD)

    async def closed_by_server(self) -> bool:
        """True once the server has closed the connection (end of stream or reset)."""
        await self.status()
        try:
            while await asyncio.wait_for(self.reader.read(65536), _GUARD):
                pass
        except ConnectionError:
            pass
        return True

    def close(self) -> None:
        self.answer.cancel()
        self.writer.close()


@contextlib.asynccontextmanager
async def raw_request(client: AppClient, headers: dict[str, str]) -> AsyncIterator[RawRequest]:
    request = await RawRequest.open(client, headers)
    try:
        yield request
    finally:
        request.close()


async def wait_in_flight(client: AppClient, count: int) -> None:
    """Wait until the server is receiving ``count`` bodies."""
    assert isinstance(client.server, TestServer)
    in_flight = client.server.app[IN_FLIGHT_KEY]
    await wait_for(lambda: in_flight.count == count, timeout=_GUARD, what=f"{count} bodies in flight")


@pytest.fixture
def make_client(aiohttp_client: AiohttpClient, settings: Settings, sqlite_db: Database
                ) -> Callable[..., Awaitable[AppClient]]:
    async def make(**changes: Any) -> AppClient:
        app = create_app(settings.model_copy(update=changes), sqlite_db, process_inbox=False)
        return await aiohttp_client(app)

    return make


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd", "x-unknown", "identity, gzip", "GZIP"])
async def test_compressed_body_is_refused_415_before_any_of_it_is_sent(
    make_client: Any, sqlite_db: Database, encoding: str
) -> None:
    client = await make_client()
    compressed = gzip.compress(BODY)
    headers = delivery_headers(compressed, **{"Content-Encoding": encoding, "Content-Length": str(len(compressed))})
    async with raw_request(client, headers) as request:
        assert await request.status() == 415
        assert await request.closed_by_server()
    assert stored(sqlite_db) == []


async def test_identity_encoding_is_accepted(make_client: Any, sqlite_db: Database) -> None:
    client = await make_client()
    headers = delivery_headers(BODY, **{"Content-Encoding": "identity"})
    response = await client.post(WEBHOOK_PATH, data=BODY, headers=headers)
    assert response.status == 202
    assert len(stored(sqlite_db)) == 1


async def test_compressed_body_is_refused_instead_of_invited_by_100_continue(
    make_client: Any, sqlite_db: Database
) -> None:
    client = await make_client()
    expect = {"Content-Encoding": "gzip", "Content-Length": "100000", "Expect": "100-continue"}
    headers = delivery_headers(BODY, **expect)
    async with raw_request(client, headers) as request:
        assert await request.status() == 415
    assert stored(sqlite_db) == []


async def test_valid_delivery_expecting_100_continue_is_stored(make_client: Any, sqlite_db: Database) -> None:
    client = await make_client()
    response = await client.post(WEBHOOK_PATH, data=BODY, headers=delivery_headers(BODY), expect100=True)
    assert response.status == 202
    assert len(stored(sqlite_db)) == 1


async def test_gzip_bomb_with_a_valid_signature_is_refused_not_inflated(
    make_client: Any, sqlite_db: Database
) -> None:
    client = await make_client()
    bomb = gzip.compress(b'{"pad": "' + b"0" * (64 * 1024 * 1024) + b'"}')
    headers = delivery_headers(bomb, **{"Content-Encoding": "gzip"})
    response = await client.post(WEBHOOK_PATH, data=bomb, headers=headers)
    assert response.status == 415
    assert stored(sqlite_db) == []


async def test_body_sent_too_slowly_is_answered_408_and_the_connection_closed(
    make_client: Any, sqlite_db: Database
) -> None:
    client = await make_client(webhook_read_timeout_seconds=0.3)
    async with raw_request(client, delivery_headers(BODY, **{"Content-Length": str(len(BODY))})) as request:
        await request.send(BODY[:10])
        assert await request.status() == 408
        assert await request.closed_by_server()
    assert stored(sqlite_db) == []


async def test_body_declared_over_25_mib_is_refused_413_before_any_of_it_is_sent(
    make_client: Any, sqlite_db: Database
) -> None:
    client = await make_client()
    headers = delivery_headers(BODY, **{"Content-Length": str(MAX_BODY_BYTES + 1)})
    async with raw_request(client, headers) as request:
        assert await request.status() == 413
        assert await request.closed_by_server()
    assert stored(sqlite_db) == []


async def test_chunked_body_growing_past_25_mib_is_cut_off_with_413(make_client: Any, sqlite_db: Database) -> None:
    client = await make_client()
    piece = b"a" * (1024 * 1024)
    frame = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    sent, limit = 0, 4 * MAX_BODY_BYTES
    async with raw_request(client, delivery_headers(BODY, **{"Transfer-Encoding": "chunked"})) as request:
        with contextlib.suppress(ConnectionError):
            while sent < limit and not request.answer.done():
                await request.send(frame)
                sent += len(piece)
        assert await request.status() == 413
        assert await request.closed_by_server()
    assert sent < limit  # the server stopped reading and closed; the rest was never taken
    assert stored(sqlite_db) == []


async def test_body_without_a_signature_header_is_refused_401_before_any_of_it_is_sent(
    make_client: Any, sqlite_db: Database
) -> None:
    client = await make_client()
    headers = delivery_headers(BODY, **{"Content-Length": str(20 * 1024 * 1024)})
    del headers["X-Hub-Signature-256"]
    async with raw_request(client, headers) as request:
        assert await request.status() == 401
    assert stored(sqlite_db) == []


async def test_requests_past_the_concurrency_cap_get_503_with_retry_after_until_a_place_frees(
    make_client: Any, sqlite_db: Database
) -> None:
    client = await make_client(webhook_max_concurrency=2)
    bodies = [json.dumps({"held": index}).encode() for index in range(2)]
    held = [await RawRequest.open(client, delivery_headers(body, f"held-{i}", **{"Content-Length": str(len(body))}))
            for i, body in enumerate(bodies)]
    try:
        for request, body in zip(held, bodies, strict=True):
            await request.send(body[:5])
        await wait_in_flight(client, 2)
        refused = await client.post(WEBHOOK_PATH, data=BODY, headers=delivery_headers(BODY, "third"))
        assert refused.status == 503
        assert refused.headers["Retry-After"].isdigit()
        for request, body in zip(held, bodies, strict=True):
            await request.send(body[5:])
            assert await request.status() == 202
    finally:
        for request in held:
            request.close()
    await wait_in_flight(client, 0)
    retried = await client.post(WEBHOOK_PATH, data=BODY, headers=delivery_headers(BODY, "third"))
    assert retried.status == 202
    assert sorted(row.delivery_id for row in stored(sqlite_db)) == ["held-0", "held-1", "third"]


async def test_large_bodies_cannot_take_the_places_small_deliveries_need(
    make_client: Any, sqlite_db: Database
) -> None:
    client = await make_client(webhook_max_concurrency=4)  # one place for a large body
    large = {"Content-Length": str(2 * 1024 * 1024), "X-Hub-Signature-256": "sha256=" + "0" * 64}
    async with raw_request(client, delivery_headers(BODY, "large-1", **large)) as first:
        await first.send(b"{")
        await wait_in_flight(client, 1)
        async with raw_request(client, delivery_headers(BODY, "large-2", **large)) as second:
            assert await second.status() == 503
        small = await client.post(WEBHOOK_PATH, data=BODY, headers=delivery_headers(BODY, "small"))
        assert small.status == 202
    assert [row.delivery_id for row in stored(sqlite_db)] == ["small"]


@pytest.mark.parametrize(
    ("allowed", "status"),
    [(["10.0.0.0/8"], 403), (["192.30.252.0/22", "::1/128"], 403), (["127.0.0.0/8"], 202), ([], 202)],
    ids=["other-v4-network", "github-and-v6-loopback", "loopback", "empty-allows-any"],
)
async def test_only_addresses_in_the_allowlist_may_deliver(
    make_client: Any, sqlite_db: Database, allowed: list[str], status: int
) -> None:
    client = await make_client(webhook_allowed_cidrs=[ipaddress.ip_network(cidr) for cidr in allowed])
    response = await client.post(WEBHOOK_PATH, data=BODY, headers=delivery_headers(BODY))
    assert response.status == status
    assert len(stored(sqlite_db)) == (1 if status == 202 else 0)


async def test_refused_address_is_answered_before_its_body_is_sent(make_client: Any, sqlite_db: Database) -> None:
    client = await make_client(webhook_allowed_cidrs=[ipaddress.ip_network("192.30.252.0/22")])
    async with raw_request(client, delivery_headers(BODY, **{"Content-Length": str(10 * 1024 * 1024)})) as request:
        assert await request.status() == 403
        assert await request.closed_by_server()
    assert stored(sqlite_db) == []


@pytest.mark.parametrize(
    ("proxies", "forwarded_for", "status"),
    [
        ([], "192.30.252.7", 403),
        (["127.0.0.1/32"], "192.30.252.7", 202),
        (["127.0.0.1/32"], "203.0.113.9", 403),
        (["127.0.0.1/32"], "192.30.252.7, 203.0.113.9", 403),
        (["127.0.0.1/32", "10.0.0.0/8"], "203.0.113.9, 192.30.252.7, 10.1.2.3", 202),
        (["127.0.0.1/32"], "not-an-address", 403),
    ],
    ids=["untrusted-peer-header-ignored", "from-github-via-proxy", "from-elsewhere-via-proxy",
         "client-prepended-github-address", "two-proxies", "garbage"],
)
async def test_forwarded_for_counts_only_from_a_trusted_proxy(
    make_client: Any, sqlite_db: Database, proxies: list[str], forwarded_for: str, status: int
) -> None:
    client = await make_client(
        webhook_allowed_cidrs=[ipaddress.ip_network("192.30.252.0/22")],
        webhook_trusted_proxies=[ipaddress.ip_network(cidr) for cidr in proxies],
    )
    headers = delivery_headers(BODY, **{"X-Forwarded-For": forwarded_for})
    response = await client.post(WEBHOOK_PATH, data=BODY, headers=headers)
    assert response.status == status


def large_delivery(size: int) -> bytes:
    return json.dumps({"action": "opened", "issue": {"number": 1, "body": "x" * size}}).encode()


async def pieces(body: bytes, size: int = 100_000) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_valid_delivery_past_1_mb_is_spooled_verified_and_stored_exactly_once(
    make_client: Any, sqlite_db: Database, settings: Settings, framing: str
) -> None:
    client = await make_client()
    body = large_delivery(3 * 1024 * 1024)
    headers = delivery_headers(body, "large")

    async def deliver() -> int:
        data: Any = body if framing == "content-length" else pieces(body)
        response = await client.post(WEBHOOK_PATH, data=data, headers=headers)
        return int(response.status)

    assert await deliver() == 202
    assert await deliver() == 200
    [row] = stored(sqlite_db)
    assert row.payload == body.decode()
    spool = settings.state_dir / "spool"
    assert spool.is_dir()
    assert list(spool.iterdir()) == []


async def test_large_body_with_a_forged_signature_is_read_refused_and_not_kept(
    make_client: Any, sqlite_db: Database, settings: Settings
) -> None:
    client = await make_client()
    body = large_delivery(3 * 1024 * 1024)
    headers = delivery_headers(body, "forged", **{"X-Hub-Signature-256": sign(b"not-our-secret", body)})
    response = await client.post(WEBHOOK_PATH, data=pieces(body), headers=headers)
    assert response.status == 401
    assert stored(sqlite_db) == []
    assert list((settings.state_dir / "spool").iterdir()) == []
