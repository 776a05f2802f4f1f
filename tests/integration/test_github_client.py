"""GitHubApp and GitHubClient against a local aiohttp server standing in for GitHub."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from agentz_app.config import Settings
from agentz_app.errors import GitHubError, RateLimited, SecondaryRateLimited
from agentz_app.github.app import GitHubApp
from agentz_app.github.client import (
    API_VERSION,
    ClientPolicy,
    ETagCache,
    GitHubClient,
    GitHubConnectionError,
)
from agentz_app.logs import configure_logging
from tests.waiting import wait_for

PREFIX = "/api/v3"
APP_ID = 4242

Reply = tuple[int, dict[str, str], Any]
Handler = Callable[[web.Request], Awaitable[Reply]]


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def private_pem(rsa_key: rsa.RSAPrivateKey) -> str:
    return rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@dataclass
class Seen:
    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes


@dataclass
class FakeGitHub:
    """Scripted GitHub: queued replies per (method, path), token minting, a request log."""

    public_key: Any
    token_lifetime: float = 3600.0
    token_gate: asyncio.Event | None = None  # when set up, tokens are minted only once it opens
    mint_requests: int = 0
    replies: dict[tuple[str, str], list[Reply]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    minted: list[str] = field(default_factory=list)

    def script(self, method: str, path: str, *replies: Reply) -> None:
        self.replies.setdefault((method, path), []).extend(replies)

    def requests_to(self, method: str, path: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method and s.path == path]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        assert request.path.startswith(PREFIX), request.path
        path = request.path[len(PREFIX) :]
        body = await request.read()
        self.seen.append(Seen(request.method, path, request.headers.copy(), body))
        if request.method == "POST" and path.startswith("/app/installations/") and path.endswith("/access_tokens"):
            return await self._mint(request)
        queue = self.replies.get((request.method, path))
        if not queue:
            return web.json_response({"message": "Not Found"}, status=404)
        status, headers, payload = queue.pop(0) if len(queue) > 1 else queue[0]
        if status == 304:
            return web.Response(status=304, headers=headers)
        return web.Response(status=status, headers=headers, body=json.dumps(payload), content_type="application/json")

    async def _mint(self, request: web.Request) -> web.StreamResponse:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        assert scheme.lower() == "bearer"
        claims = jwt.decode(token, self.public_key, algorithms=["RS256"])
        assert claims["iss"] == str(APP_ID)
        self.mint_requests += 1
        if self.token_gate is not None:
            await self.token_gate.wait()
        minted = f"v1.{len(self.minted) + 1:02d}-opaque-installation-credential"  # not redaction-shaped
        self.minted.append(minted)
        expires = datetime.fromtimestamp(time.time() + self.token_lifetime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return web.json_response({"token": minted, "expires_at": expires}, status=201)


class FakeTime:
    """A clock that only moves when something sleeps; records every requested wait."""

    def __init__(self) -> None:
        self.now = time.time()
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
async def fake(
    aiohttp_server: Callable[[web.Application], Awaitable[TestServer]], rsa_key: rsa.RSAPrivateKey
) -> tuple[FakeGitHub, str]:
    hub = FakeGitHub(public_key=rsa_key.public_key())
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", hub.handle)
    server = await aiohttp_server(app)
    return hub, str(server.make_url(PREFIX))


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def make_app(
    settings: Settings,
    private_pem: str,
    fake: tuple[FakeGitHub, str],
    session: aiohttp.ClientSession,
    fake_time: FakeTime,
) -> Callable[..., GitHubApp]:
    _, url = fake

    def build(**policy: Any) -> GitHubApp:
        configured = settings.model_copy(
            update={"github_api_url": url, "github_app_id": APP_ID, "github_private_key": SecretStr(private_pem)}
        )
        responses: list[tuple[str, str, int]] = []
        app = GitHubApp(
            configured,
            session,
            policy=ClientPolicy(**{"retry_attempts": 3, "min_write_interval": 0.0, **policy}),
            sleep=fake_time.sleep,
            clock=fake_time.clock,
            on_response=lambda method, u, status, headers: responses.append((method, u, status)),
        )
        app.responses = responses  # type: ignore[attr-defined]
        return app

    return build


async def test_fifty_concurrent_callers_cause_one_token_request(
    fake: tuple[FakeGitHub, str], make_app: Callable[..., GitHubApp]
) -> None:
    hub, _ = fake
    hub.token_gate = asyncio.Event()
    app = make_app()
    callers = asyncio.gather(*(app.installation_token(7) for _ in range(50)))
    await wait_for(lambda: hub.mint_requests > 0, timeout=10, what="the first token request")
    hub.token_gate.set()  # every caller has asked while the first mint was held
    tokens = await callers
    assert set(tokens) == {hub.minted[0]}
    assert len(hub.requests_to("POST", "/app/installations/7/access_tokens")) == 1


async def test_token_close_to_expiry_is_fetched_again(
    fake: tuple[FakeGitHub, str], make_app: Callable[..., GitHubApp]
) -> None:
    hub, _ = fake
    app = make_app()
    hub.token_lifetime = 120  # inside the five-minute refresh margin
    first = await app.installation_token(7)
    second = await app.installation_token(7)
    assert first != second
    hub.token_lifetime = 3600
    third = await app.installation_token(7)
    assert await app.installation_token(7) == third
    assert len(hub.requests_to("POST", "/app/installations/7/access_tokens")) == 3


async def test_installation_client_authenticates_lazily_with_api_version(
    fake: tuple[FakeGitHub, str], make_app: Callable[..., GitHubApp]
) -> None:
    hub, _ = fake
    hub.script("GET", "/repos/o/r", (200, {}, {"full_name": "o/r"}))
    app = make_app()
    gh = app.client(7)
    assert hub.seen == []
    assert (await gh.getitem("/repos/{owner}/{repo}", {"owner": "o", "repo": "r"}))["full_name"] == "o/r"
    request = hub.requests_to("GET", "/repos/o/r")[0]
    assert request.headers["Authorization"] == f"token {hub.minted[0]}"
    assert request.headers["X-GitHub-Api-Version"] == API_VERSION


async def test_bad_gateway_twice_then_success_is_retried(
    fake: tuple[FakeGitHub, str], make_app: Callable[..., GitHubApp], fake_time: FakeTime
) -> None:
    hub, _ = fake
    hub.script("GET", "/repos/o/r/issues/1", (502, {}, {"message": "bad"}), (502, {}, {}), (200, {}, {"number": 1}))
    gh = make_app().client(7)
    assert (await gh.getitem("/repos/o/r/issues/1"))["number"] == 1
    assert len(hub.requests_to("GET", "/repos/o/r/issues/1")) == 3
    assert fake_time.sleeps == [0.5, 1.0]


async def test_persistent_server_errors_raise_after_retry_attempts(
    fake: tuple[FakeGitHub, str], make_app: Callable[..., GitHubApp]
) -> None:
    hub, _ = fake
    hub.script("POST", "/repos/o/r/issues/1/comments", (503, {}, {"message": "unavailable"}))
    gh = make_app(retry_attempts=4).client(7)
    with pytest.raises(GitHubError) as caught:
        await gh.post("/repos/o/r/issues/1/comments", data={"body": "hi"})
    assert caught.value.status_code == 503
    assert "unavailable" in str(caught.value)
    assert len(hub.requests_to("POST", "/repos/o/r/issues/1/comments")) == 4


async def test_unreachable_github_raises_connection_error_after_retries(
    settings: Settings, private_pem: str, session: aiohttp.ClientSession, fake_time: FakeTime
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gh = GitHubClient(
        session,
        base_url=f"http://127.0.0.1:{port}",
        app_jwt=lambda: "not-a-real-jwt",
        policy=ClientPolicy(retry_attempts=3),
        sleep=fake_time.sleep,
    )
    with pytest.raises(GitHubConnectionError) as caught:
        await gh.getitem("/app")
    assert caught.value.status_code == 0
    assert len(fake_time.sleeps) == 2


async def test_too_many_requests_with_retry_after_waits_then_succeeds(
    fake: tuple[FakeGitHub, str], make_app: Callable[..., GitHubApp], fake_time: FakeTime
) -> None:
    hub, _ = fake
    hub.script("GET", "/repos/o/r/pulls", (429, {"Retry-After": "1"}, {"message": "slow down"}), (200, {}, []))
    gh = make_app().client(7)
    assert await gh.getitem("/repos/o/r/pulls") == []
    assert fake_time.sleeps == [1.0]


async def test_exhausted_primary_limit_waits_until_reset(
    fake: tuple[FakeGitHub, str], make_app: Callable[..., GitHubApp], fake_time: FakeTime
) -> None:
    hub, _ = fake
    reset = int(fake_time.now) + 30
    limited = {"X-RateLimit-Remaining": "0", "X-RateLimit-Limit": "5000", "X-RateLimit-Reset": str(reset)}
    hub.script("GET", "/repos/o/r", (403, limited, {"message": "API rate limit exceeded"}), (200, {}, {"id": 1}))
    gh = make_app().client(7)
    assert (await gh.getitem("/repos/o/r"))["id"] == 1
    assert fake_time.sleeps == [pytest.approx(reset - (fake_time.now - fake_time.sleeps[0]))]
    assert fake_time.now == pytest.approx(reset)


async def test_rate_limit_wait_beyond_maximum_raises_rate_limited(
    fake: tuple[FakeGitHub, str], make_app: Callable[..., GitHubApp], fake_time: FakeTime
) -> None:
    hub, _ = fake
    reset = int(fake_time.now) + 3600
    hub.script("GET", "/repos/o/r", (403, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}, {}))
    gh = make_app(max_rate_limit_wait=900).client(7)
    with pytest.raises(RateLimited) as caught:
        await gh.getitem("/repos/o/r")
    assert caught.value.reset_at == reset
    assert caught.value.status_code == 403
    assert fake_time.sleeps == []
    # A second call does not hit GitHub again while the limit lasts.
    with pytest.raises(RateLimited):
        await gh.getitem("/repos/o/r/issues")
    assert len(hub.requests_to("GET", "/repos/o/r")) == 1
    assert hub.requests_to("GET", "/repos/o/r/issues") == []


async def test_secondary_limit_message_waits_a_minute_or_raises_when_too_long(
    fake: tuple[FakeGitHub, str], make_app: Callable[..., GitHubApp], fake_time: FakeTime
) -> None:
    hub, _ = fake
    secondary: Reply = (403, {}, {"message": "You have exceeded a secondary rate limit. Please wait a few minutes."})
    hub.script("POST", "/repos/o/r/issues", secondary, (201, {}, {"number": 5}))
    gh = make_app().client(7)
    assert (await gh.post("/repos/o/r/issues", data={"title": "t"}))["number"] == 5
    assert fake_time.sleeps == [60.0]

    hub.script("POST", "/repos/o/r/labels", secondary, (201, {}, {}))
    impatient = make_app(max_rate_limit_wait=30).client(8)
    with pytest.raises(SecondaryRateLimited) as caught:
        await impatient.post("/repos/o/r/labels", data={"name": "x"})
    assert caught.value.retry_after == 60.0


async def test_repeated_secondary_limits_back_off_exponentially(
    fake: tuple[FakeGitHub, str], make_app: Callable[..., GitHubApp], fake_time: FakeTime
) -> None:
    hub, _ = fake
    secondary: Reply = (403, {}, {"message": "You have exceeded a secondary rate limit."})
    hub.script("PUT", "/repos/o/r/issues/1/labels", secondary, secondary, (200, {}, [{"name": "x"}]))
    gh = make_app().client(7)
    assert await gh.put("/repos/o/r/issues/1/labels", data={"labels": ["x"]}) == [{"name": "x"}]
    assert fake_time.sleeps == [60.0, 120.0]


async def test_endless_rate_limit_answers_give_up_after_the_retry_cap(
    fake: tuple[FakeGitHub, str], make_app: Callable[..., GitHubApp], fake_time: FakeTime
) -> None:
    hub, _ = fake
    hub.script("GET", "/repos/o/r", (429, {"Retry-After": "1"}, {}))
    gh = make_app(max_rate_limit_retries=2).client(7)
    with pytest.raises(SecondaryRateLimited):
        await gh.getitem("/repos/o/r")
    assert len(hub.requests_to("GET", "/repos/o/r")) == 3
    assert fake_time.sleeps == [1.0, 1.0]


async def test_spent_quota_on_a_success_delays_the_next_request_until_reset(
    fake: tuple[FakeGitHub, str], make_app: Callable[..., GitHubApp], fake_time: FakeTime
) -> None:
    hub, _ = fake
    reset = int(fake_time.now) + 20
    hub.script("GET", "/repos/o/r", (200, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}, {}))
    hub.script("GET", "/search/issues", (200, {}, {"items": []}))
    app = make_app()
    await app.client(7).getitem("/repos/o/r")
    assert fake_time.sleeps == []
    await app.client(7).getitem("/search/issues")  # another bucket: no wait
    assert fake_time.sleeps == []
    await app.client(7).getitem("/repos/o/r")
    assert fake_time.now == pytest.approx(reset)
    assert len(hub.requests_to("GET", "/repos/o/r")) == 2


async def test_forbidden_without_rate_limit_signal_raises_at_once(
    fake: tuple[FakeGitHub, str], make_app: Callable[..., GitHubApp], fake_time: FakeTime
) -> None:
    hub, _ = fake
    hub.script("PATCH", "/repos/o/r", (403, {"X-RateLimit-Remaining": "4000"}, {"message": "Resource not accessible"}))
    gh = make_app().client(7)
    with pytest.raises(GitHubError) as caught:
        await gh.patch("/repos/o/r", data={"name": "x"})
    assert caught.value.status_code == 403
    assert caught.value.body == {"message": "Resource not accessible"}
    assert fake_time.sleeps == []
    assert len(hub.requests_to("PATCH", "/repos/o/r")) == 1


async def test_second_get_revalidates_with_etag_and_304_returns_cached_body(
    fake: tuple[FakeGitHub, str], make_app: Callable[..., GitHubApp]
) -> None:
    hub, _ = fake
    issue = {"number": 3, "title": "Cached"}
    hub.script("GET", "/repos/o/r/issues/3", (200, {"ETag": 'W/"abc"'}, issue), (304, {"ETag": 'W/"abc"'}, None))
    app = make_app()
    first = await app.client(7).getitem("/repos/o/r/issues/3")
    second = await app.client(7).getitem("/repos/o/r/issues/3")
    assert first == second == issue
    requests = hub.requests_to("GET", "/repos/o/r/issues/3")
    assert "If-None-Match" not in requests[0].headers
    assert requests[1].headers["If-None-Match"] == 'W/"abc"'
    statuses = [status for method, u, status in app.responses if u.endswith("/issues/3")]  # type: ignore[attr-defined]
    assert statuses == [200, 304]


async def test_etag_cache_is_kept_apart_per_installation(
    fake: tuple[FakeGitHub, str], make_app: Callable[..., GitHubApp]
) -> None:
    hub, _ = fake
    hub.script("GET", "/repos/o/r", (200, {"ETag": '"one"'}, {"id": 1}))
    app = make_app()
    await app.client(7).getitem("/repos/o/r")
    await app.client(8).getitem("/repos/o/r")
    requests = hub.requests_to("GET", "/repos/o/r")
    assert "If-None-Match" not in requests[1].headers


async def test_getiter_follows_link_pages(fake: tuple[FakeGitHub, str], make_app: Callable[..., GitHubApp]) -> None:
    hub, url = fake
    hub.script("GET", "/repos/o/r/labels", (200, {"Link": f'<{url}/repos/o/r/labels2>; rel="next"'}, [{"n": 1}]))
    hub.script("GET", "/repos/o/r/labels2", (200, {}, [{"n": 2}]))
    gh = make_app().client(7)
    assert [item["n"] async for item in gh.getiter("/repos/o/r/labels")] == [1, 2]


async def test_rejected_token_is_replaced_and_request_retried_once(
    fake: tuple[FakeGitHub, str], make_app: Callable[..., GitHubApp]
) -> None:
    hub, _ = fake
    hub.script("GET", "/repos/o/r", (401, {}, {"message": "Bad credentials"}), (200, {}, {"id": 1}))
    hub.script("GET", "/repos/o/other", (401, {}, {"message": "Bad credentials"}))
    gh = make_app().client(7)
    assert (await gh.getitem("/repos/o/r"))["id"] == 1
    first, second = hub.requests_to("GET", "/repos/o/r")
    assert first.headers["Authorization"] == f"token {hub.minted[0]}"
    assert second.headers["Authorization"] == f"token {hub.minted[1]}"
    with pytest.raises(GitHubError) as caught:
        await gh.getitem("/repos/o/other")
    assert caught.value.status_code == 401
    assert len(hub.requests_to("GET", "/repos/o/other")) == 2


async def test_not_found_and_validation_failures_raise_github_error(
    fake: tuple[FakeGitHub, str], make_app: Callable[..., GitHubApp]
) -> None:
    hub, _ = fake
    invalid = {"message": "Validation Failed", "errors": [{"resource": "Label", "field": "name", "code": "invalid"}]}
    hub.script("POST", "/repos/o/r/labels", (422, {}, invalid))
    gh = make_app().client(7)
    with pytest.raises(GitHubError) as missing:
        await gh.getitem("/repos/o/r/issues/999")
    assert missing.value.status_code == 404
    assert await gh.getstatus("/repos/o/r/issues/999") == 404
    with pytest.raises(GitHubError) as rejected:
        await gh.post("/repos/o/r/labels", data={"name": ""})
    assert rejected.value.status_code == 422
    assert "Validation Failed (Label name invalid)" in str(rejected.value)


@pytest.mark.parametrize(
    ("burst", "writes", "expected_sleeps"),
    [(1, 3, [1.0, 1.0]), (8, 8, []), (3, 5, [1.0, 1.0])],
    ids=["spaced", "one-burst", "burst-then-spaced"],
)
async def test_writes_are_paced_to_the_interval_after_a_burst(
    fake: tuple[FakeGitHub, str],
    session: aiohttp.ClientSession,
    fake_time: FakeTime,
    make_app: Callable[..., GitHubApp],
    burst: int,
    writes: int,
    expected_sleeps: list[float],
) -> None:
    hub, url = fake
    hub.script("POST", "/repos/o/r/issues/1/comments", (201, {}, {"id": 1}))
    hub.script("GET", "/repos/o/r", (200, {}, {"id": 1}))
    app = make_app()
    gh = GitHubClient(
        session,
        base_url=url,
        installation_id=7,
        tokens=app.tokens,
        app_jwt=app.app_jwt,
        policy=ClientPolicy(min_write_interval=1.0, write_burst=burst),
        sleep=fake_time.sleep,
        clock=fake_time.clock,
        monotonic=fake_time.clock,
    )
    for _ in range(writes):
        await gh.post("/repos/o/r/issues/1/comments", data={"body": "x"})
        await gh.getitem("/repos/o/r")
    assert fake_time.sleeps == expected_sleeps


async def test_installation_for_repo_asks_as_the_app(
    fake: tuple[FakeGitHub, str], make_app: Callable[..., GitHubApp], rsa_key: rsa.RSAPrivateKey
) -> None:
    hub, _ = fake
    hub.script("GET", "/repos/o/r/installation", (200, {}, {"id": 77, "account": {"login": "o"}}))
    hub.script("GET", "/repos/O/R/installation", (200, {}, {"id": 77, "account": {"login": "o"}}))
    app = make_app()
    assert await app.installation_for_repo("o/r") == 77
    scheme, _, token = hub.requests_to("GET", "/repos/o/r/installation")[0].headers["Authorization"].partition(" ")
    assert scheme == "Bearer"
    assert jwt.decode(token, rsa_key.public_key(), algorithms=["RS256"])["iss"] == str(APP_ID)
    gh = await app.client_for_repo("O/R")
    assert gh.installation_id == 77
    assert (await app.client_for_repo("o/r")).installation_id == 77
    assert len(hub.requests_to("GET", "/repos/O/R/installation")) == 1
    with pytest.raises(GitHubError) as caught:
        await app.installation_for_repo("o/missing")
    assert caught.value.status_code == 404
    with pytest.raises(ValueError, match="must look like owner/name"):
        await app.installation_for_repo("not a repo")


async def test_tokens_never_reach_log_output(
    fake: tuple[FakeGitHub, str], make_app: Callable[..., GitHubApp], fake_time: FakeTime
) -> None:
    hub, _ = fake
    hub.script("GET", "/repos/o/r", (401, {}, {}), (502, {}, {}), (429, {"Retry-After": "2"}, {}), (200, {}, {}))
    hub.script("GET", "/repos/o/gone", (404, {}, {"message": "Not Found"}))
    stream = io.StringIO()
    configure_logging("json", "debug", stream=stream)
    app = make_app()
    gh = app.client(7)
    await gh.getitem("/repos/o/r")
    with pytest.raises(GitHubError) as caught:
        await gh.getitem("/repos/o/gone")
    output = stream.getvalue()
    assert "github.token_rejected" in output
    assert "github.retry" in output
    assert "github.rate_limited" in output
    assert len(hub.minted) == 2
    for token in hub.minted:
        assert token not in output
        assert token not in repr(gh) + repr(app) + repr(app.tokens) + str(caught.value)
    assert app.app_jwt() not in output


async def test_shared_etag_cache_is_bounded_by_size() -> None:
    from agentz_app.github.client import CachedResponse

    cache = ETagCache(max_bytes=10)
    cache.put("a", CachedResponse(etag="1", body=b"12345"))
    cache.put("b", CachedResponse(etag="2", body=b"12345"))
    cache.get("a")
    cache.put("c", CachedResponse(etag="3", body=b"123"))
    assert cache.get("b") is None
    assert cache.get("a") is not None
    assert cache.get("c") is not None
    assert cache.size == 8
    cache.put("huge", CachedResponse(etag="4", body=b"x" * 11))
    assert cache.get("huge") is None
