"""The fake GitHub's HTTP application: authentication, faults, counters, ETags and error bodies around
the routes of each resource (:mod:`agentz_app.fakehub.routes`)."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable

import jwt
from aiohttp import web

from agentz_app.fakehub import grants
from agentz_app.fakehub.contract import Exchange
from agentz_app.fakehub.errors import ApiError
from agentz_app.fakehub.model import HubModel
from agentz_app.fakehub.routes import apps, checks, hooks, issues, pulls, repos
from agentz_app.fakehub.routes.common import ACTOR, HUB, Caller, error_body, json_response, rate_headers
from agentz_app.fakehub.state import NotFoundError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
WRITE_METHODS = ("POST", "PATCH", "PUT", "DELETE")


def etag_for(body: bytes) -> str:
    """A strong ETag for a response body."""
    return '"' + hashlib.sha256(body).hexdigest()[:40] + '"'


def etag_matches(if_none_match: str, etag: str) -> bool:
    """Whether an ``If-None-Match`` header matches ``etag`` (weak comparison, like GitHub)."""
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or etag.removeprefix("W/") in tags


def is_hook(request: web.Request) -> bool:
    """Whether the request is a test/admin hook, not a GitHub API call."""
    return request.path.startswith("/_fakehub/") or "X-Fakehub-As" in request.headers


# ---- middleware ------------------------------------------------------------------

@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Faults, counters, authentication, GitHub error bodies, rate-limit headers and ETags."""
    hub = request.app[HUB]
    hook = is_hook(request)
    if not hook:
        fault = await _count_and_delay(hub, request)
        if fault is not None:
            return fault_response(hub, fault)
    response = await _answer(hub, request, handler, hook=hook)
    if hook or not isinstance(response, web.Response):
        return response
    response.headers.update(rate_headers(hub))
    response.headers["X-GitHub-Request-Id"] = uuid.uuid4().hex[:20].upper()
    response.headers["X-GitHub-Api-Version-Selected"] = "2022-11-28"
    response = _with_etag(hub, request, response)
    if hub.observers:
        await observe(hub, request, response)
    return response


async def _count_and_delay(hub: HubModel, request: web.Request) -> str | None:
    """Count an API request, add the configured latency; the fault to inject, if any."""
    hub.requests[request.method] += 1
    if request.method in WRITE_METHODS and not request.path.endswith("/access_tokens"):
        hub.writes += 1
        hub.write_log.append(f"{request.method} {request.path}")
    if hub.faults.config.latency_seconds:
        await asyncio.sleep(hub.faults.config.latency_seconds)
    return hub.faults.api_fault(request.path)


async def _answer(hub: HubModel, request: web.Request, handler: Handler, *, hook: bool) -> web.StreamResponse:
    """Authenticate, check the grant (API calls only) and run ``handler``; errors become GitHub's error bodies."""
    try:
        request[ACTOR] = authenticate(hub, request)
        if not hook:
            check_grant(hub, request)
        return await handler(request)
    except ApiError as exc:
        response = json_response(error_body(exc.status, exc.message, exc.errors), exc.status)
        response.headers.update(exc.headers)
        return response
    except NotFoundError:
        return json_response(error_body(404, "Not Found"), 404)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_response(error_body(exc.status, exc.reason), exc.status)


def _with_etag(hub: HubModel, request: web.Request, response: web.Response) -> web.Response:
    """Tag a GET's 200 answer with its ETag; a 304 without a body when the client already has it."""
    if request.method != "GET" or response.status != 200 or response.body is None:
        return response
    assert isinstance(response.body, bytes)
    tag = etag_for(response.body)
    response.headers["ETag"] = tag
    if not etag_matches(request.headers.get("If-None-Match", ""), tag):
        return response
    hub.not_modified += 1
    headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-type", "content-length")}
    return web.Response(status=304, headers=headers)


async def observe(hub: HubModel, request: web.Request, response: web.Response) -> None:
    """Show one answered API request to the hub's traffic observers."""
    body = response.body if isinstance(response.body, bytes) and response.content_type == "application/json" else None
    exchange = Exchange(method=request.method, path=request.raw_path.split("?", 1)[0], query=dict(request.query),
                        body=await request.read(), status=response.status,
                        response_body=None if response.status == 304 else body)
    for observer in hub.observers:
        observer.exchange(exchange)


def fault_response(hub: HubModel, fault: str) -> web.Response:
    """The answer for an injected API fault."""
    cfg = hub.faults.config
    if fault == "server_error":
        return json_response(error_body(502, "Server Error"), 502)
    if fault == "secondary_limit":
        status = 429 if hub.faults.rng.random() < 0.5 else 403
        response = json_response(error_body(status, "You have exceeded a secondary rate limit. Please wait a few "
                                                    "minutes before you try again."), status)
        response.headers["retry-after"] = str(cfg.retry_after_seconds)
        return response
    reset = int(time.time()) + cfg.primary_reset_seconds
    response = json_response(error_body(403, "API rate limit exceeded for installation."), 403)
    response.headers.update({"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "0", "x-ratelimit-used": "5000",
                             "x-ratelimit-reset": str(reset), "x-ratelimit-resource": "core"})
    return response


def authenticate(hub: HubModel, request: web.Request) -> Caller:
    """Who is calling (401 for bad credentials or a bad App JWT)."""
    as_user = request.headers.get("X-Fakehub-As")
    if as_user:
        return {"kind": "user", "login": as_user}
    header = request.headers.get("Authorization", "")
    scheme, _, credential = header.partition(" ")
    credential = credential.strip()
    if not header:
        return {"kind": "anonymous", "login": None}
    if scheme.lower() == "bearer" and credential.count(".") == 2 and not credential.startswith("ghs_"):
        verify_jwt(hub, credential)
        return {"kind": "app", "login": None}
    if credential.startswith("ghs_"):
        installation = hub.apps.token_installation(credential)
        if installation is None:
            raise ApiError(401, "Bad credentials")
        return {"kind": "installation", "login": hub.app.bot_login, "installation_id": installation}
    if scheme.lower() not in ("token", "bearer") or not credential:
        raise ApiError(401, "Bad credentials")
    return {"kind": "user", "login": hub.default_user}


def check_grant(hub: HubModel, request: web.Request) -> None:
    """403 like GitHub when an installation token calls an API its App was not granted."""
    if request[ACTOR]["kind"] != "installation":
        return
    resource = request.match_info.route.resource
    if resource is None:
        return
    needed = grants.grants_by_route().get(f"{request.method} {grants.normalise(resource.canonical)}")
    if needed is not None and not grants.allowed(hub.app.permissions, needed):
        raise ApiError(403, "Resource not accessible by integration")


def verify_jwt(hub: HubModel, token: str) -> None:
    """Check an App JWT: RS256 signed by the App key when one is configured."""
    try:
        header = jwt.get_unverified_header(token)
        if header.get("alg") != "RS256":
            raise ApiError(401, "A JSON web token could not be decoded (algorithm must be RS256)")
        if hub.apps.public_key_pem is None:
            claims = jwt.decode(token, options={"verify_signature": False})
        else:
            claims = jwt.decode(token, hub.apps.public_key_pem, algorithms=["RS256"], leeway=60,
                                options={"require": ["exp", "iat", "iss"]})
    except jwt.PyJWTError as exc:
        raise ApiError(401, f"A JSON web token could not be decoded ({type(exc).__name__})") from None
    if hub.apps.public_key_pem is not None and str(claims.get("iss")) not in (str(hub.app.id), ""):
        raise ApiError(401, "'Issuer' claim ('iss') must be an Integer and the App's id")
    exp, iat = claims.get("exp"), claims.get("iat")
    if isinstance(exp, int | float) and isinstance(iat, int | float) and exp - iat > 660:
        raise ApiError(401, "'Expiration time' claim ('exp') is too far in the future")


def create_app(hub: HubModel) -> web.Application:
    """Build the aiohttp application serving ``hub``."""
    app = web.Application(middlewares=[api_middleware], client_max_size=32 * 1024 * 1024)
    app[HUB] = hub
    for register in (apps.register, repos.register, issues.register, pulls.register, checks.register,
                     hooks.register):
        register(app, hub)
    return app
