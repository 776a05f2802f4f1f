"""The GitHub REST client: gidgethub's API over aiohttp, with Agent-Z's policies.

Callers use the ordinary gidgethub methods (``getitem``, ``getiter``, ``post``,
``patch``, ``put``, ``delete``, ``getstatus``). Underneath, every request:

* authenticates lazily: an installation token (re-fetched once after a 401) or
  the App JWT for ``/app/...`` endpoints;
* is retried on 5xx and network errors with capped exponential backoff;
* waits out primary and secondary rate limits, or raises :class:`RateLimited`
  / :class:`SecondaryRateLimited` when the wait would be too long;
* paces content-creating requests to one per ``min_write_interval`` on average,
  allowing a burst of ``write_burst`` (one pull request's worth of writes) so a
  single run is not slowed by spacing meant for sustained volume (GitHub's
  secondary limit is 80 content-creating requests a minute);
* sends ``If-None-Match`` for cached GETs and answers a 304 from the cache.

Every error is an :class:`agentz_app.errors.GitHubError`; gidgethub's own
exceptions never reach callers.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn
from urllib.parse import urljoin, urlsplit

import aiohttp
import gidgethub
from gidgethub import abc as gh_abc
from gidgethub import sansio
from multidict import CIMultiDict, CIMultiDictProxy
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, wait_exponential

from agentz_app.errors import GitHubError, RateLimited, SecondaryRateLimited
from agentz_app.github import ratelimit
from agentz_app.github.auth import InstallationTokens
from agentz_app.logs import get_logger

API_VERSION = "2022-11-28"
WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})

OnResponse = Callable[[str, str, int, Mapping[str, str]], None]
"""``on_response(method, url, status, headers)``: called once per HTTP response, 304s included."""
Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]
Response = tuple[int, Mapping[str, str], bytes]

_NETWORK_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError)


class GitHubConnectionError(GitHubError):
    """GitHub could not be reached after every retry; ``status_code`` is 0."""

    def __init__(self, message: str) -> None:
        super().__init__(0, message)


@dataclass(frozen=True)
class ClientPolicy:
    """Retry, rate-limit and pacing limits for a client."""

    retry_attempts: int = 3
    """Attempts in all (not extra retries) for 5xx answers and network errors."""
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    max_rate_limit_wait: float = 900.0
    """Longest rate-limit wait to sit out; longer ones raise instead."""
    max_rate_limit_retries: int = 10
    min_write_interval: float = 1.0
    """Seconds per content-creating request (POST, PATCH, PUT, DELETE), sustained."""
    write_burst: int = 8
    """Content-creating requests allowed back to back before the spacing applies."""
    request_timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.retry_attempts < 1:
            raise ValueError("retry_attempts must be at least 1")
        for name in ("backoff_base", "backoff_max", "max_rate_limit_wait", "min_write_interval"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.max_rate_limit_retries < 0:
            raise ValueError("max_rate_limit_retries must not be negative")
        if self.write_burst < 1:
            raise ValueError("write_burst must be at least 1")
        if self.request_timeout <= 0:
            raise ValueError("request_timeout must be positive")


@dataclass(frozen=True)
class CachedResponse:
    """A GET answer kept for conditional requests."""

    etag: str
    body: bytes
    content_type: str | None = None
    link: str | None = None


class ETagCache:
    """ETag + body per request, least recently used evicted past ``max_bytes``; share it per process."""

    def __init__(self, *, max_bytes: int = 32 * 1024 * 1024) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, CachedResponse] = OrderedDict()
        self._size = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        """Bytes of cached bodies."""
        return self._size

    def get(self, key: str) -> CachedResponse | None:
        """The cached answer for ``key``, marking it recently used."""
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: str, entry: CachedResponse) -> None:
        """Remember an answer, evicting the least recently used past the size limit."""
        self.discard(key)
        if len(entry.body) > self.max_bytes:
            return
        self._entries[key] = entry
        self._size += len(entry.body)
        while self._size > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._size -= len(evicted.body)

    def discard(self, key: str) -> None:
        """Forget one answer."""
        old = self._entries.pop(key, None)
        if old is not None:
            self._size -= len(old.body)

    def clear(self) -> None:
        """Forget everything."""
        self._entries.clear()
        self._size = 0


@dataclass(frozen=True)
class _Block:
    until: float
    kind: ratelimit.Kind
    status: int


@dataclass
class RequestPacer:
    """Pacing state for one GitHub identity: write spacing and rate-limit blocks.

    Clients of the same installation may share one so that their writes are
    spaced and their rate-limit waits honoured together.
    """

    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    write_tokens: float | None = None
    """Writes available now (a token bucket); None means full."""
    tokens_at: float = 0.0
    blocks: dict[str, _Block] = field(default_factory=dict)


class _ServerError(Exception):
    """A 5xx answer, raised inside the retry loop only."""

    def __init__(self, response: Response) -> None:
        self.response = response
        super().__init__(f"GitHub returned {response[0]}")


def decode_body(body: bytes) -> Any:
    """JSON-decode an answer body, falling back to text."""
    text = body.decode("utf-8", errors="replace")
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def error_message(body: object) -> str:
    """A one-line reason from a GitHub error body, including field errors."""
    data = decode_body(body) if isinstance(body, bytes) else body
    message = ratelimit.response_message(data)
    errors = data.get("errors") if isinstance(data, Mapping) else None
    if isinstance(errors, list) and errors:
        details = []
        for item in errors[:5]:
            if isinstance(item, Mapping):
                parts = [str(item[k]) for k in ("resource", "field", "code", "message") if item.get(k)]
                details.append(" ".join(parts))
            else:
                details.append(str(item))
        message = f"{message} ({'; '.join(details)})" if message else "; ".join(details)
    return message


def _raise_for(status: int, headers: Mapping[str, str], body: bytes) -> NoReturn:
    raise GitHubError(status, error_message(body), headers=headers, body=decode_body(body))


def _rate_limit_error(status: int, hit: ratelimit.RateLimitHit, headers: Mapping[str, str],
                      body: object) -> GitHubError:
    if hit.kind == "primary":
        return RateLimited(status, hit.until, headers=headers, body=body)
    return SecondaryRateLimited(status, hit.wait, headers=headers, body=body)


class GitHubClient(gh_abc.GitHubAPI):
    """gidgethub's API over an aiohttp session, authenticated as an installation or as the App."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str = sansio.DOMAIN,
        requester: str = "agent-z",
        installation_id: int | None = None,
        tokens: InstallationTokens | None = None,
        app_jwt: Callable[[], str] | None = None,
        etags: ETagCache | None = None,
        on_response: OnResponse | None = None,
        policy: ClientPolicy | None = None,
        pacer: RequestPacer | None = None,
        sleep: Sleep | None = None,
        clock: Clock = time.time,
        monotonic: Clock = time.monotonic,
    ) -> None:
        if (installation_id is None) != (tokens is None):
            raise ValueError("installation_id and tokens must be given together")
        if installation_id is not None and installation_id < 1:
            raise ValueError(f"installation id must be positive, got {installation_id}")
        super().__init__(requester, base_url=base_url.rstrip("/"))
        self.installation_id = installation_id
        self._session = session
        self._tokens = tokens
        self._jwt_source = app_jwt
        self._etags = etags
        self._on_response = on_response
        self.policy = policy or ClientPolicy()
        self._pacer = pacer or RequestPacer()
        self._sleep = sleep or asyncio.sleep
        self._clock = clock
        self._monotonic = monotonic
        self._base_path = urlsplit(self.base_url).path.rstrip("/")
        self._log = get_logger("agentz.github", installation_id=installation_id)

    def __repr__(self) -> str:
        who = f"installation {self.installation_id}" if self.installation_id is not None else "app"
        return f"GitHubClient({who}, {self.base_url})"

    async def sleep(self, seconds: float) -> None:
        """Wait; injectable so tests record waits instead of sleeping."""
        await self._sleep(seconds)

    # gidgethub entry points -------------------------------------------------

    async def _make_request(self, *args: Any, **kwargs: Any) -> tuple[Any, str | None, int]:
        try:
            result: tuple[Any, str | None, int] = await super()._make_request(*args, **kwargs)
        except gidgethub.HTTPException as exc:
            raise GitHubError(int(exc.status_code), str(exc), headers=exc.headers) from exc
        except gidgethub.GitHubException as exc:
            raise GitHubError(0, str(exc)) from exc
        return result

    async def getstatus(self, *args: Any, **kwargs: Any) -> int:
        """Send a GET and return its status code, error statuses included."""
        try:
            _, _, status = await self._make_request("GET", *_getstatus_args(*args, **kwargs))
        except GitHubError as exc:
            if exc.status_code == 0:
                raise
            return exc.status_code
        return status

    async def graphql(self, query: str, *, endpoint: str | None = None, **variables: Any) -> Any:
        """Query the GraphQL API at this client's host."""
        try:
            return await super().graphql(query, endpoint=endpoint or self._graphql_url(), **variables)
        except gidgethub.GitHubException as exc:
            status = getattr(exc, "status_code", 0)
            raise GitHubError(int(status), str(exc), body=getattr(exc, "response", None)) from exc

    def _graphql_url(self) -> str:
        if self.base_url.rstrip("/").endswith("/api/v3"):
            return self.base_url.rstrip("/")[: -len("/v3")] + "/graphql"
        return self.base_url.rstrip("/") + "/graphql"

    async def download_tail(self, url: str, *, max_bytes: int) -> bytes:
        """The last ``max_bytes`` bytes behind an API URL that redirects to a download (a job's log).

        The API request carries our credentials; the redirect target (another host, with its
        own signed URL) is fetched without them, so the token never leaves the API host.
        """
        api_url = sansio.format_url(url, {}, base_url=self.base_url)
        path = self._relative_path(api_url)
        headers = {key.lower(): value for key, value in sansio.create_headers(self.requester).items()}
        headers["x-github-api-version"] = API_VERSION
        await self._wait_for_blocks(path)
        await self._authorize(headers, False, self._uses_jwt(path))
        timeout = aiohttp.ClientTimeout(total=self.policy.request_timeout)
        try:
            async with self._session.get(api_url, headers=headers, allow_redirects=False,
                                         timeout=timeout) as response:
                self._report("GET", api_url, response.status, response.headers)
                if 200 <= response.status < 300:
                    return await _read_tail(response, max_bytes)
                location = response.headers.get("Location", "")
                if response.status not in (301, 302, 303, 307, 308) or not location:
                    _raise_for(response.status, response.headers, await response.read())
            target = urljoin(api_url, location)
            if urlsplit(target).scheme not in ("http", "https"):
                raise GitHubError(response.status, f"GET {url}: redirected to an unusable location")
            plain = {"user-agent": self.requester, "range": f"bytes=-{max_bytes}"}
            async with self._session.get(target, headers=plain, timeout=timeout) as download:
                if download.status not in (200, 206):
                    raise GitHubError(download.status, f"GET {url}: the download answered {download.status}")
                return await _read_tail(download, max_bytes)
        except _NETWORK_ERRORS as exc:
            raise GitHubConnectionError(f"GET {url}: {type(exc).__name__}: {exc}") from exc

    # transport ---------------------------------------------------------------

    def _relative_path(self, url: str) -> str:
        path = urlsplit(url).path or "/"
        if self._base_path and path.startswith(self._base_path + "/"):
            path = path[len(self._base_path) :]
        return path

    def _uses_jwt(self, path: str) -> bool:
        if self._jwt_source is None:
            return False
        if path == "/app" or path.startswith("/app/"):
            return True
        return self._tokens is None

    def _identity(self, uses_jwt: bool) -> str:
        if uses_jwt:
            return "app"
        if self.installation_id is not None:
            return f"installation:{self.installation_id}"
        return "anonymous"

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        method = method.upper()
        path = self._relative_path(url)
        request_headers = {key.lower(): value for key, value in headers.items()}
        explicit_auth = "authorization" in request_headers
        uses_jwt = not explicit_auth and self._uses_jwt(path)
        if method in WRITE_METHODS and not uses_jwt and self.policy.min_write_interval > 0:
            async with self._pacer.write_lock:
                await self._space_write()
                return await self._send(method, url, path, request_headers, body, explicit_auth, uses_jwt)
        return await self._send(method, url, path, request_headers, body, explicit_auth, uses_jwt)

    async def _space_write(self) -> None:
        interval = self.policy.min_write_interval
        burst = float(self.policy.write_burst)
        now = self._monotonic()
        pacer = self._pacer
        tokens = burst
        if pacer.write_tokens is not None:
            tokens = min(burst, pacer.write_tokens + (now - pacer.tokens_at) / interval)
        if tokens < 1.0:
            await self.sleep((1.0 - tokens) * interval)
            now, tokens = self._monotonic(), 1.0
        pacer.write_tokens, pacer.tokens_at = tokens - 1.0, now

    async def _authorize(self, headers: dict[str, str], explicit_auth: bool, uses_jwt: bool) -> str | None:
        """Set the authorization header; return the installation token used, if any."""
        if explicit_auth:
            return None
        if uses_jwt and self._jwt_source is not None:
            headers["authorization"] = f"Bearer {self._jwt_source()}"
            return None
        if self._tokens is not None and self.installation_id is not None:
            token = await self._tokens.get(self.installation_id)
            headers["authorization"] = f"token {token}"
            return token
        headers.pop("authorization", None)
        return None

    async def _send(
        self,
        method: str,
        url: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        explicit_auth: bool,
        uses_jwt: bool,
    ) -> Response:
        headers["x-github-api-version"] = API_VERSION
        cache_key, cached = self._cached(method, url, headers, explicit_auth, uses_jwt)
        reauthorized = False
        rate_limit_waits = 0
        while True:
            await self._wait_for_blocks(path)
            token = await self._authorize(headers, explicit_auth, uses_jwt)
            status, response_headers, response_body = await self._send_with_retries(method, url, headers, body)
            now = self._clock()
            self._note_exhaustion(status, response_headers, path, now)
            if status == 401 and token is not None and not reauthorized and self._tokens is not None:
                assert self.installation_id is not None
                self._tokens.invalidate(self.installation_id, token)
                reauthorized = True
                self._log.info("github.token_rejected", method=method, url=url)
                continue
            hit = ratelimit.classify(
                status, response_headers, response_body, now=now, path=path, previous_hits=rate_limit_waits
            )
            if hit is not None:
                self._pacer.blocks[hit.resource] = _Block(hit.until, hit.kind, status)
                if hit.wait > self.policy.max_rate_limit_wait or rate_limit_waits >= self.policy.max_rate_limit_retries:
                    raise _rate_limit_error(status, hit, response_headers, decode_body(response_body))
                rate_limit_waits += 1
                self._log.warning("github.rate_limited", kind=hit.kind, wait=round(hit.wait, 3), method=method, url=url)
                continue
            if status == 304 and cached is not None:
                return 200, _replay_headers(response_headers, cached), cached.body
            if not 200 <= status < 300:
                _raise_for(status, response_headers, response_body)
            if cache_key is not None:
                self._remember(cache_key, status, response_headers, response_body)
            return status, response_headers, response_body

    def _cached(self, method: str, url: str, headers: dict[str, str], explicit_auth: bool,
                uses_jwt: bool) -> tuple[str | None, CachedResponse | None]:
        """The ETag cache key of a GET (None when it is not cached) and the response cached under it.

        A cached response's ETag goes into ``headers`` as ``if-none-match``.
        """
        if method != "GET" or self._etags is None or explicit_auth or "if-none-match" in headers:
            return None, None
        cache_key = f"{self._identity(uses_jwt)}\n{headers.get('accept', '')}\n{url}"
        cached = self._etags.get(cache_key)
        if cached is not None:
            headers["if-none-match"] = cached.etag
        return cache_key, cached

    def _remember(self, cache_key: str, status: int, headers: Mapping[str, str], body: bytes) -> None:
        """Cache a 200 answer that has an ETag; forget the key otherwise."""
        if self._etags is None:
            return
        etag = ratelimit.header(headers, "etag")
        if etag and status == 200:
            self._etags.put(
                cache_key,
                CachedResponse(
                    etag=etag,
                    body=body,
                    content_type=ratelimit.header(headers, "content-type"),
                    link=ratelimit.header(headers, "link"),
                ),
            )
        else:
            self._etags.discard(cache_key)

    def _note_exhaustion(self, status: int, headers: Mapping[str, str], path: str, now: float) -> None:
        if status >= 400:
            return
        until = ratelimit.exhausted_until(headers, now=now)
        if until is not None:
            resource = ratelimit.header(headers, "x-ratelimit-resource") or ratelimit.resource_for_path(path)
            self._pacer.blocks[resource] = _Block(until, "primary", 403)

    async def _wait_for_blocks(self, path: str) -> None:
        now = self._clock()
        candidates = [self._pacer.blocks.get(ratelimit.resource_for_path(path)), self._pacer.blocks.get("*")]
        active = [block for block in candidates if block is not None and block.until > now]
        if not active:
            return
        block = max(active, key=lambda b: b.until)
        wait = block.until - now
        if wait > self.policy.max_rate_limit_wait:
            hit = ratelimit.RateLimitHit(block.kind, wait, block.until, "*")
            raise _rate_limit_error(block.status, hit, {}, None)
        await self.sleep(wait)

    async def _send_with_retries(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> Response:
        policy = self.policy
        retrying = AsyncRetrying(
            stop=stop_after_attempt(policy.retry_attempts),
            wait=wait_exponential(multiplier=policy.backoff_base, max=policy.backoff_max),
            retry=retry_if_exception_type((_ServerError, *_NETWORK_ERRORS)),
            sleep=self.sleep,
            before_sleep=self._log_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._send_once(method, url, headers, body)
        except _ServerError as exc:
            _raise_for(*exc.response)
        except _NETWORK_ERRORS as exc:
            raise GitHubConnectionError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
        raise AssertionError("retry loop ended without a result")  # pragma: no cover

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        reason = f"status {error.response[0]}" if isinstance(error, _ServerError) else type(error).__name__
        self._log.warning("github.retry", attempt=state.attempt_number, reason=reason)

    async def _send_once(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> Response:
        timeout = aiohttp.ClientTimeout(total=self.policy.request_timeout)
        async with self._session.request(method, url, headers=headers, data=body, timeout=timeout) as response:
            data = await response.read()
            status, response_headers = response.status, response.headers
        self._report(method, url, status, response_headers)
        if status >= 500:
            raise _ServerError((status, response_headers, data))
        return status, response_headers, data

    def _report(self, method: str, url: str, status: int, headers: Mapping[str, str]) -> None:
        if self._on_response is None:
            return
        try:
            self._on_response(method, url, status, headers)
        except Exception as exc:  # noqa: BLE001 - a caller's metrics hook: what it raises must not fail the request
            self._log.warning("github.on_response_failed", error=type(exc).__name__)


async def _read_tail(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    """The last ``max_bytes`` bytes of a response body, read in chunks."""
    tail = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        tail += chunk
        if len(tail) > 2 * max_bytes:
            del tail[: len(tail) - max_bytes]
    return bytes(tail[-max_bytes:])


def _replay_headers(headers: Mapping[str, str], cached: CachedResponse) -> CIMultiDictProxy[str]:
    replay: CIMultiDict[str] = CIMultiDict(headers)
    for name, value in (("content-type", cached.content_type), ("link", cached.link)):
        replay.popall(name, None)
        if value is not None:
            replay[name] = value
    return CIMultiDictProxy(replay)


def _getstatus_args(
    url: str,
    url_vars: Mapping[str, Any] | None = None,
    *,
    accept: str = sansio.accept_format(),
    jwt: str | None = None,
    oauth_token: str | None = None,
) -> tuple[Any, ...]:
    return (url, url_vars if url_vars is not None else {}, b"", accept, jwt, oauth_token)
