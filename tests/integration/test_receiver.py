from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient
from sqlalchemy import select, text

from agentz_app.config import Settings
from agentz_app.github.signatures import sign
from agentz_app.ingress.inbox import process_pending
from agentz_app.ingress.limits import MAX_BODY_BYTES
from agentz_app.store.db import Database
from agentz_app.store.models import Delivery, IssueSnapshot
from agentz_app.web import WEBHOOK_PATH, create_app
from tests.waiting import wait_for
from tests.web_client import AppClient

SECRET = b"test-secret"

def issue_payload(*, title: str, updated_at: str, action: str = "edited", number: int = 7) -> dict[str, Any]:
    return {
        "action": action,
        "issue": {
            "number": number,
            "title": title,
            "body": "",
            "state": "open",
            "labels": [],
            "assignees": [],
            "user": {"login": "octocat"},
            "updated_at": updated_at,
        },
        "repository": {"id": 1296269, "full_name": "octo/repo", "default_branch": "main"},
        "installation": {"id": 42},
        "sender": {"login": "octocat"},
    }


async def post(
    client: AppClient,
    body: bytes,
    *,
    event: str | None = "issues",
    delivery: str | None = "d-1",
    signature: str | None = "sign",
    content_type: str = "application/json",
) -> Any:
    headers = {"Content-Type": content_type}
    if signature == "sign":
        headers["X-Hub-Signature-256"] = sign(SECRET, body)
    elif signature is not None:
        headers["X-Hub-Signature-256"] = signature
    if event is not None:
        headers["X-GitHub-Event"] = event
    if delivery is not None:
        headers["X-GitHub-Delivery"] = delivery
    return await client.post(WEBHOOK_PATH, data=body, headers=headers)


def stored(db: Database) -> list[Delivery]:
    with db.read() as session:
        return list(session.scalars(select(Delivery).order_by(Delivery.id)))


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, settings: Settings, sqlite_db: Database) -> AppClient:
    return await aiohttp_client(create_app(settings, sqlite_db, process_inbox=False))


async def test_signed_delivery_is_stored_with_its_raw_body_and_accepted(
    client: AppClient, sqlite_db: Database
) -> None:
    body = b'{"action": "opened",  "issue": {"number": 1}, "repository": {"full_name": "octo/repo"},' \
        b' "installation": {"id": 42}}'
    response = await post(client, body)
    assert response.status == 202
    assert await response.json() == {"status": "accepted"}
    [row] = stored(sqlite_db)
    assert row.payload == body.decode()  # kept byte for byte, not re-serialised
    assert (row.delivery_id, row.event, row.action, row.installation_id, row.repo) == (
        "d-1", "issues", "opened", 42, "octo/repo",
    )
    assert row.processed_at is None
    assert row.attempts == 0


@pytest.mark.parametrize(
    "signature",
    [None, "sha256=" + "0" * 64, "sha1=0123456789abcdef0123456789abcdef01234567", "garbage"],
    ids=["missing", "wrong", "sha1", "garbage"],
)
async def test_unsigned_or_badly_signed_delivery_is_rejected_and_nothing_stored(
    client: AppClient, sqlite_db: Database, signature: str | None
) -> None:
    response = await post(client, b'{"action": "opened"}', signature=signature)
    assert response.status == 401
    assert stored(sqlite_db) == []


async def test_body_signed_with_another_secret_is_rejected(client: AppClient, sqlite_db: Database) -> None:
    body = b'{"action": "opened"}'
    response = await post(client, body, signature=sign(b"not-our-secret", body))
    assert response.status == 401
    assert stored(sqlite_db) == []


@pytest.mark.parametrize("missing", ["event", "delivery"])
async def test_delivery_without_event_or_delivery_header_is_a_bad_request(
    client: AppClient, sqlite_db: Database, missing: str
) -> None:
    kwargs: dict[str, Any] = {missing: None}
    response = await post(client, b'{"action": "opened"}', **kwargs)
    assert response.status == 400
    assert stored(sqlite_db) == []


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2, 3]", b'"text"', b"\xff\xfe{}"], ids=str)
async def test_malformed_or_non_object_json_is_a_bad_request(
    client: AppClient, sqlite_db: Database, body: bytes
) -> None:
    response = await post(client, body)
    assert response.status == 400
    assert stored(sqlite_db) == []


@pytest.mark.parametrize(
    "body",
    [b'{"id": 123456789012345678901234567890}', b'{"score": NaN}', b'{"text": "\\ud800"}'],
    ids=["big-int", "nan", "lone-surrogate"],
)
async def test_valid_json_outside_the_fast_parser_is_still_accepted(
    client: AppClient, sqlite_db: Database, body: bytes
) -> None:
    response = await post(client, body)
    assert response.status == 202
    assert [row.payload for row in stored(sqlite_db)] == [body.decode()]


async def test_overlong_delivery_id_is_a_bad_request(client: AppClient, sqlite_db: Database) -> None:
    response = await post(client, b"{}", delivery="x" * 65)
    assert response.status == 400
    assert stored(sqlite_db) == []


async def test_body_over_25_mib_is_refused_as_too_large(client: AppClient, sqlite_db: Database) -> None:
    body = b'{"pad": "' + b"a" * MAX_BODY_BYTES + b'"}'
    response = await post(client, body)
    assert response.status == 413
    assert stored(sqlite_db) == []


async def test_form_encoded_delivery_is_stored_as_its_json_payload(
    client: AppClient, sqlite_db: Database
) -> None:
    body = b"payload=%7B%22action%22%3A%22opened%22%7D"
    response = await post(client, body, content_type="application/x-www-form-urlencoded")
    assert response.status == 202
    assert stored(sqlite_db)[0].payload == '{"action":"opened"}'


async def test_repeat_delivery_is_stored_once(client: AppClient, sqlite_db: Database) -> None:
    first = await post(client, b'{"action": "opened"}')
    second = await post(client, b'{"action": "opened"}')
    assert (first.status, second.status) == (202, 200)
    assert await second.json() == {"status": "duplicate"}
    assert len(stored(sqlite_db)) == 1


async def test_concurrent_copies_of_one_delivery_are_accepted_exactly_once(
    client: AppClient, sqlite_db: Database
) -> None:
    responses = await asyncio.gather(*(post(client, b'{"n": 1}', delivery="same") for _ in range(20)))
    assert sorted(response.status for response in responses) == [200] * 19 + [202]
    assert len(stored(sqlite_db)) == 1


async def test_concurrent_deliveries_are_all_stored(client: AppClient, sqlite_db: Database) -> None:
    responses = await asyncio.gather(
        *(post(client, json.dumps({"n": index}).encode(), delivery=f"d-{index}") for index in range(200))
    )
    assert {response.status for response in responses} == {202}
    rows = stored(sqlite_db)
    assert sorted(row.delivery_id for row in rows) == sorted(f"d-{index}" for index in range(200))
    assert {row.delivery_id: json.loads(row.payload)["n"] for row in rows} == {f"d-{i}": i for i in range(200)}


async def test_delivery_that_cannot_be_stored_is_answered_500_for_redelivery(
    client: AppClient, sqlite_db: Database
) -> None:
    with sqlite_db.begin() as session:
        session.execute(text("DROP TABLE deliveries"))
    response = await post(client, b'{"action": "opened"}')
    assert response.status == 500


async def test_healthz_and_readyz_answer_when_the_database_is_reachable(client: AppClient) -> None:
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200


async def test_readyz_is_unavailable_when_the_database_is_not(
    aiohttp_client: AiohttpClient, settings: Settings
) -> None:
    unreachable = Database.from_url("postgresql://agentz@127.0.0.1:1/none")
    client = await aiohttp_client(create_app(settings, unreachable, process_inbox=False))
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 503


async def test_out_of_order_issue_edit_does_not_regress_the_snapshot(
    client: AppClient, sqlite_db: Database, settings: Settings
) -> None:
    newer = issue_payload(title="newer title", updated_at="2024-05-02T10:00:00Z")
    older = issue_payload(title="older title", updated_at="2024-05-01T10:00:00Z")
    assert (await post(client, json.dumps(newer).encode(), delivery="new")).status == 202
    assert await process_pending(sqlite_db, settings, github=None) == 1
    assert (await post(client, json.dumps(older).encode(), delivery="old")).status == 202
    assert await process_pending(sqlite_db, settings, github=None) == 1
    with sqlite_db.read() as session:
        issue = session.scalars(select(IssueSnapshot)).one()
    assert (issue.title, issue.updated_at) == ("newer title", "2024-05-02T10:00:00Z")
    assert all(row.processed_at is not None and row.error is None for row in stored(sqlite_db))


async def test_receiver_processes_stored_deliveries_in_the_background(
    aiohttp_client: AiohttpClient, settings: Settings, sqlite_db: Database
) -> None:
    client = await aiohttp_client(create_app(settings, sqlite_db))
    payload = issue_payload(title="from the background", updated_at="2024-05-02T10:00:00Z", action="opened")
    assert (await post(client, json.dumps(payload).encode())).status == 202
    await wait_for(lambda: stored(sqlite_db)[0].processed_at is not None, timeout=10,
                   what="the stored delivery processed in the background")
    with sqlite_db.read() as session:
        assert session.scalars(select(IssueSnapshot.title)).one() == "from the background"


async def test_metrics_report_webhook_latency(client: AppClient) -> None:
    assert (await post(client, b'{"action": "opened"}')).status == 202
    response = await client.get("/metrics")
    assert response.status == 200
    assert "agentz_webhook_latency_seconds_count 1.0" in await response.text()
