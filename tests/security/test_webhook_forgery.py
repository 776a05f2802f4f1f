"""Forged, altered and replayed webhooks against the real receiver and inbox (real SQLite).

A forged delivery is answered 401 and nothing is stored; a replayed delivery
(same id, same body, valid signature) is stored once and handled once.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from gidgethub import routing, sansio
from pytest_aiohttp import AiohttpClient
from sqlalchemy import select

from agentz_app.config import Settings
from agentz_app.errors import ConfigError
from agentz_app.github.signatures import sign
from agentz_app.ingress.inbox import process_pending
from agentz_app.store.db import Database
from agentz_app.store.models import Delivery
from agentz_app.web import WEBHOOK_PATH, create_app
from tests.web_client import AppClient

SECRET = b"test-secret"
BODY = json.dumps({"action": "opened", "issue": {"number": 7}, "repository": {"full_name": "acme/app"}}).encode()
RIGHT = sign(SECRET, BODY)
DIGEST = RIGHT.removeprefix("sha256=")


def stored(db: Database) -> list[Delivery]:
    with db.read() as session:
        return list(session.scalars(select(Delivery).order_by(Delivery.id)))


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, settings: Settings, sqlite_db: Database) -> AppClient:
    client: AppClient = await aiohttp_client(create_app(settings, sqlite_db, process_inbox=False))
    return client


async def post(client: AppClient, body: bytes, signature: str | None, delivery: str = "d-1") -> int:
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "issues", "X-GitHub-Delivery": delivery}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    response = await client.post(WEBHOOK_PATH, data=body, headers=headers)
    return int(response.status)


@pytest.mark.parametrize(
    "signature",
    [
        "sha1=" + DIGEST,
        "SHA256=" + DIGEST,
        "Sha256=" + DIGEST,
        "sha-256=" + DIGEST,
        RIGHT[:-1],
        RIGHT[:-2],
        RIGHT + "0",
        RIGHT + RIGHT,
        "sha256=",
        "sha256= " + DIGEST[:-1],
        "sha256 =" + DIGEST,
        "sha256=" + DIGEST[:32] + " " + DIGEST[33:],
        "sha256=\t" + DIGEST[1:],
        "sha256=" + DIGEST[:-1] + "\t",
        "sha256=" + DIGEST + ", sha256=" + DIGEST,
        "sha256=0x" + DIGEST[2:],
        sign(SECRET, BODY + b"\n"),
        sign(SECRET, BODY.replace(b'"opened"', b'"closed"')),
        sign(SECRET, b""),
        sign(b"", BODY),
        sign(SECRET + b" ", BODY),
    ],
    ids=["sha1-prefix", "upper-prefix", "mixed-prefix", "sha-256-prefix", "truncated", "truncated-2", "extended",
         "doubled", "empty-digest", "space-after-prefix", "space-before-equals", "space-inside", "tab-after-prefix",
         "tab-at-end", "two-values", "hex-prefix", "trailing-newline-body", "other-body", "empty-body",
         "empty-secret", "secret-with-space"],
)
async def test_altered_signatures_are_refused_and_nothing_is_stored(
    client: AppClient, sqlite_db: Database, signature: str
) -> None:
    assert await post(client, BODY, signature) == 401
    assert stored(sqlite_db) == []
    assert await post(client, BODY, RIGHT) == 202  # the same request, rightly signed, is accepted


async def test_signed_header_must_match_the_exact_bytes_received(
    client: AppClient, sqlite_db: Database
) -> None:
    reformatted = json.dumps(json.loads(BODY), indent=2).encode()  # same JSON value, other bytes
    assert await post(client, reformatted, RIGHT) == 401
    assert stored(sqlite_db) == []


async def test_non_ascii_signature_bytes_are_refused_not_a_server_error(
    client: AppClient, sqlite_db: Database
) -> None:
    for signature in (b"sha256=\xff" + DIGEST[1:].encode(), b"sha256=" + "\u00e9".encode() + DIGEST[2:].encode()):
        request = b"\r\n".join([
            b"POST " + WEBHOOK_PATH.encode() + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close",
            b"Content-Type: application/json", b"X-GitHub-Event: issues", b"X-GitHub-Delivery: d-raw",
            b"X-Hub-Signature-256: " + signature, b"Content-Length: " + str(len(BODY)).encode(), b"", BODY,
        ])
        reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
        writer.write(request)
        await writer.drain()
        status_line = await reader.readline()
        writer.close()
        assert status_line.split()[1] == b"401"
    assert stored(sqlite_db) == []


def test_receiver_refuses_to_start_without_a_webhook_secret(tmp_path: Path, sqlite_db: Database) -> None:
    for secret in (None, ""):
        settings = Settings.load(None, database_url="sqlite://", state_dir=tmp_path, github_webhook_secret=secret)
        with pytest.raises(ConfigError, match="GITHUB_WEBHOOK_SECRET"):
            create_app(settings, sqlite_db, process_inbox=False)


def counting_router(counter: list[str]) -> routing.Router:
    router = routing.Router()

    @router.register("issues")
    async def count(event: sansio.Event, gh: Any, **_: Any) -> None:
        counter.append(event.delivery_id)

    return router


async def test_replayed_delivery_is_stored_once_and_handled_once(
    client: AppClient, sqlite_db: Database, settings: Settings
) -> None:
    handled: list[str] = []
    router = counting_router(handled)
    assert await post(client, BODY, RIGHT, delivery="old-1") == 202
    assert await process_pending(sqlite_db, settings, github=None, router=router) == 1
    # Later, someone who captured the request sends it again, byte for byte, a few times.
    replies = await asyncio.gather(*(post(client, BODY, RIGHT, delivery="old-1") for _ in range(5)))
    assert replies == [200] * 5
    assert await process_pending(sqlite_db, settings, github=None, router=router) == 0
    assert handled == ["old-1"]
    [row] = stored(sqlite_db)
    assert row.processed_at is not None
    assert row.attempts == 0


async def test_replayed_delivery_id_cannot_replace_the_stored_payload(
    client: AppClient, sqlite_db: Database, settings: Settings
) -> None:
    assert await post(client, BODY, RIGHT, delivery="same-id") == 202
    other = BODY.replace(b'"opened"', b'"deleted"')
    assert await post(client, other, sign(SECRET, other), delivery="same-id") == 200
    [row] = stored(sqlite_db)
    assert row.payload == BODY.decode()
    assert row.action == "opened"
