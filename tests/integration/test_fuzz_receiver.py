"""Fuzz the real webhook receiver and inbox with generated requests (real SQLite).

Whatever arrives, the receiver answers without a 500, stores nothing it cannot
verify, and a stored delivery never crashes the inbox processor: a handler that
fails leaves its error on the delivery instead.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from gidgethub import routing, sansio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytest_aiohttp import AiohttpClient
from sqlalchemy import delete, func, select

from agentz_app.config import Settings
from agentz_app.github.signatures import sign
from agentz_app.ingress.inbox import process_pending
from agentz_app.ingress.routers import build_router
from agentz_app.logs import configure_logging
from agentz_app.store.db import Database
from agentz_app.store.models import Delivery
from agentz_app.web import WEBHOOK_PATH, create_app
from tests.fakes import FakeGitHubApp
from tests.web_client import AppClient

SECRET = b"test-secret"
FUZZ = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
_ids = itertools.count(1)

# Header values a client can put on the wire: no CR/LF or other control characters.
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=80)
content_types = st.sampled_from(
    ["application/json", "application/x-www-form-urlencoded", "text/plain", "application/octet-stream",
     "multipart/form-data; boundary=x", "application/json; charset=latin-1", ""]
)
# Strings include lone surrogates ("\udcff" survives json.dumps as an escape and comes back from json.loads).
json_strings = st.text(max_size=30) | st.sampled_from(["\udcff", "a\ud800b", "\x00", "\u202e"])
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | json_strings
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(json_strings, children, max_size=5),
    max_leaves=30,
)


def _nested(depth: int, kind: str) -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


bodies = st.one_of(
    st.binary(max_size=2048),
    st.text(max_size=512).map(str.encode),
    json_values.map(lambda value: json.dumps(value).encode()),
    st.dictionaries(st.text(max_size=10), json_values, max_size=8).map(lambda value: json.dumps(value).encode()),
    st.tuples(st.integers(1, 100_000), st.sampled_from(["array", "object"])).map(lambda args: _nested(*args)),
    st.integers(1, 400_000).map(lambda size: json.dumps({"pad": "x" * size}).encode()),
    st.binary(min_size=1, max_size=64).map(lambda raw: b'{"text": "' + raw + b'"}'),
)


def _row_count(db: Database) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(Delivery)) or 0)


@pytest.fixture(autouse=True)
def quiet_logs() -> Iterator[None]:
    """Render handler failures as plain JSON lines (structlog's default pretty tracebacks are slow)."""
    configure_logging("json", "warning", stream=io.StringIO())
    yield
    structlog.reset_defaults()


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, settings: Settings, sqlite_db: Database) -> AppClient:
    client: AppClient = await aiohttp_client(create_app(settings, sqlite_db, process_inbox=False))
    return client


def _bad_signature(kind: str, body: bytes, noise: str) -> str | None:
    right = sign(SECRET, body)
    digest = right.removeprefix("sha256=")
    return {
        "missing": None,
        "noise": noise,
        "other_secret": sign(b"another-secret", body),
        "other_body": sign(SECRET, body + b" "),
        "sha1_prefix": "sha1=" + digest,
        "upper_prefix": "SHA256=" + digest,
        "truncated": right[:-1],
        "extended": right + "0",
        "no_prefix": digest,
    }[kind]


@FUZZ
@given(
    body=bodies,
    kind=st.sampled_from(["missing", "noise", "other_secret", "other_body", "sha1_prefix", "upper_prefix",
                          "truncated", "extended", "no_prefix"]),
    noise=header_text,
    event=st.none() | header_text,
    delivery=st.none() | header_text,
    content_type=content_types,
)
async def test_unverified_requests_are_refused_and_never_stored(
    client: AppClient, sqlite_db: Database, body: bytes, kind: str, noise: str,
    event: str | None, delivery: str | None, content_type: str,
) -> None:
    headers = {"Content-Type": content_type}
    signature = _bad_signature(kind, body, noise)
    for name, value in (("X-Hub-Signature-256", signature), ("X-GitHub-Event", event), ("X-GitHub-Delivery", delivery)):
        if value is not None:
            headers[name] = value
    before = _row_count(sqlite_db)
    response = await client.post(WEBHOOK_PATH, data=body, headers=headers)
    assert response.status == 401
    assert _row_count(sqlite_db) == before


@FUZZ
@given(body=bodies, event=st.none() | header_text, delivery=st.none() | header_text, content_type=content_types)
async def test_signed_garbage_is_never_a_server_error_and_stored_only_when_accepted(
    client: AppClient, sqlite_db: Database, body: bytes, event: str | None, delivery: str | None,
    content_type: str,
) -> None:
    headers = {"Content-Type": content_type, "X-Hub-Signature-256": sign(SECRET, body)}
    if event is not None:
        headers["X-GitHub-Event"] = event
    if delivery is not None:
        headers["X-GitHub-Delivery"] = f"{delivery}-{next(_ids)}"[-64:] if delivery.strip() else delivery
    before = _row_count(sqlite_db)
    response = await client.post(WEBHOOK_PATH, data=body, headers=headers)
    assert response.status in (200, 202, 400), await response.text()
    assert _row_count(sqlite_db) == before + (1 if response.status == 202 else 0)


event_names = st.sampled_from(
    ["issues", "issue_comment", "pull_request", "pull_request_review", "pull_request_review_comment",
     "check_run", "check_suite", "status", "installation", "installation_repositories", "push", "ping"]
) | st.from_regex(r"[a-z_]{1,30}", fullmatch=True)
actions = st.sampled_from(
    ["opened", "edited", "labeled", "unlabeled", "created", "closed", "reopened", "completed", "submitted",
     "requested_action", "deleted", "added", "synchronize", "assigned"]
) | json_strings
# Objects shaped a little like GitHub's, with fields missing, mistyped or random.
loose_objects = st.fixed_dictionaries(
    {},
    optional={
        "action": actions | json_values,
        "installation": st.fixed_dictionaries({}, optional={"id": st.integers(-5, 2**63) | json_values}) | json_values,
        "repository": st.fixed_dictionaries(
            {}, optional={"full_name": st.sampled_from(["acme/app", "x/y", "a\udcff/b"]) | json_values,
                          "id": json_values, "default_branch": json_values}
        ) | json_values,
        "issue": st.fixed_dictionaries(
            {}, optional={"number": st.integers(-3, 2**40) | json_values, "title": json_values,
                          "body": json_values, "state": st.sampled_from(["open", "closed"]) | json_values,
                          "labels": json_values, "updated_at": json_values, "user": json_values,
                          "pull_request": json_values, "comments_url": json_values}
        ) | json_values,
        "comment": st.fixed_dictionaries(
            {}, optional={"body": st.sampled_from(["/agent-z run", "/agent-z cancel"]) | json_values,
                          "user": json_values, "id": json_values, "performed_via_github_app": json_values}
        ) | json_values,
        "label": st.fixed_dictionaries({}, optional={"name": st.sampled_from(["agent-z", "bug"]) | json_values}),
        "pull_request": json_values,
        "check_run": json_values,
        "check_suite": json_values,
        "sender": json_values,
        "sha": json_values,
        "state": json_values,
    },
)


@FUZZ
@given(
    deliveries=st.lists(
        st.tuples(event_names, loose_objects | st.dictionaries(st.text(max_size=12), json_values, max_size=6)),
        min_size=1, max_size=4,
    )
)
async def test_signed_random_objects_are_stored_and_processing_them_never_crashes(
    client: AppClient, sqlite_db: Database, settings: Settings,
    deliveries: list[tuple[str, dict[str, Any]]],
) -> None:
    with sqlite_db.begin() as session:  # examples share the database: start each from an empty inbox
        session.execute(delete(Delivery))
    sent: list[str] = []
    for event, payload in deliveries:
        body = json.dumps(payload).encode()
        delivery_id = f"fuzz-{next(_ids)}"
        response = await client.post(WEBHOOK_PATH, data=body, headers={
            "Content-Type": "application/json", "X-GitHub-Event": event, "X-GitHub-Delivery": delivery_id,
            "X-Hub-Signature-256": sign(SECRET, body),
        })
        assert response.status == 202, await response.text()
        sent.append(delivery_id)
    # Every installation gets a client that knows nothing: each GitHub call answers 404.
    await process_pending(sqlite_db, settings, github=FakeGitHubApp(), router=build_router())
    with sqlite_db.read() as session:
        rows = list(session.scalars(select(Delivery).where(Delivery.delivery_id.in_(sent))))
    assert len(rows) == len(sent)
    for row in rows:
        handled = row.processed_at is not None and row.error is None
        failed = row.processed_at is None and row.attempts == 1 and bool(row.error)
        assert handled or failed, (row.event, row.payload, row.error)


async def raw_post(client: AppClient, headers: list[tuple[bytes, bytes]], body: bytes) -> int:
    """POST with header bytes exactly as given (an HTTP client library would refuse to send some)."""
    lines = [b"POST " + WEBHOOK_PATH.encode() + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close",
             b"Content-Length: " + str(len(body)).encode()]
    lines += [name + b": " + value for name, value in headers]
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    try:
        writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        await writer.drain()
        status_line = await reader.readline()
    finally:
        writer.close()
    return int(status_line.split()[1])


@pytest.mark.parametrize(
    ("event", "delivery"),
    [(b"iss\xffues", b"d-1"), (b"issues", b"d-\xff"), (b"issues", "d-\u00e9".encode()), (b"\xc3\xa9", b"d-2")],
    ids=["event-not-utf8", "delivery-not-utf8", "delivery-not-ascii", "event-not-ascii"],
)
async def test_signed_delivery_with_undecodable_headers_is_a_bad_request(
    client: AppClient, sqlite_db: Database, event: bytes, delivery: bytes
) -> None:
    body = b'{"action": "opened"}'
    headers = [(b"Content-Type", b"application/json"), (b"X-GitHub-Event", event),
               (b"X-GitHub-Delivery", delivery), (b"X-Hub-Signature-256", sign(SECRET, body).encode())]
    assert await raw_post(client, headers, body) == 400
    assert _row_count(sqlite_db) == 0


def echoing_router(seen: list[str]) -> routing.Router:
    """A handler that fails with a message quoting the payload, as careless error messages do."""
    router = routing.Router()

    @router.register("issues")
    async def fail(event: sansio.Event, gh: Any, **_: Any) -> None:
        seen.append(event.delivery_id)
        raise ValueError(f"cannot handle {event.data.get('title')} ({event.data})")

    return router


@FUZZ
@given(titles=st.lists(json_strings, min_size=1, max_size=4))
async def test_handler_errors_quoting_hostile_payloads_are_recorded_not_raised(
    client: AppClient, sqlite_db: Database, settings: Settings, titles: list[str]
) -> None:
    with sqlite_db.begin() as session:
        session.execute(delete(Delivery))
    sent = []
    for title in titles:
        body = json.dumps({"action": "opened", "title": title}).encode()
        delivery_id = f"echo-{next(_ids)}"
        response = await client.post(WEBHOOK_PATH, data=body, headers={
            "Content-Type": "application/json", "X-GitHub-Event": "issues", "X-GitHub-Delivery": delivery_id,
            "X-Hub-Signature-256": sign(SECRET, body)})
        assert response.status == 202
        sent.append(delivery_id)
    seen: list[str] = []
    assert await process_pending(sqlite_db, settings, github=None, router=echoing_router(seen)) == len(sent)
    assert seen == sent
    with sqlite_db.read() as session:
        rows = list(session.scalars(select(Delivery)))
    assert all(row.processed_at is None and row.attempts == 1 and "ValueError" in (row.error or "") for row in rows)
