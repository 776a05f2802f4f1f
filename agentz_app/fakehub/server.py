"""aiohttp routes of the fake GitHub: the REST subset Agent-Z calls plus ``/_fakehub`` test hooks."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import jwt
from aiohttp import web

from agentz_app.fakehub import grants, render
from agentz_app.fakehub.contract import Exchange
from agentz_app.fakehub.errors import ApiError, names_list
from agentz_app.fakehub.faults import FaultConfig
from agentz_app.fakehub.model import HubModel
from agentz_app.fakehub.state import NotFoundError, Record

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
HUB: web.AppKey[HubModel] = web.AppKey("hub", HubModel)
ACTOR: web.RequestKey[Record] = web.RequestKey("actor", dict)
DOCS = "https://docs.github.com/rest"
WRITE_METHODS = ("POST", "PATCH", "PUT", "DELETE")


def error_body(status: int, message: str, errors: list[Any] | None = None) -> Record:
    """GitHub's JSON error body."""
    body: Record = {"message": message, "documentation_url": DOCS, "status": str(status)}
    if errors:
        body["errors"] = errors
    return body


def etag_for(body: bytes) -> str:
    """A strong ETag for a response body."""
    return '"' + hashlib.sha256(body).hexdigest()[:40] + '"'


def etag_matches(if_none_match: str, etag: str) -> bool:
    """Whether an ``If-None-Match`` header matches ``etag`` (weak comparison, like GitHub)."""
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or etag.removeprefix("W/") in tags


def page_params(query: Any) -> tuple[int, int]:
    """``(page, per_page)`` from a query, validated (per_page at most 100)."""
    try:
        page = int(query.get("page", 1))
        per_page = int(query.get("per_page", 30))
    except ValueError:
        raise ApiError(422, "page and per_page must be integers") from None
    return max(page, 1), min(max(per_page, 1), 100)


def link_header(url: Any, page: int, per_page: int, total: int) -> str | None:
    """The ``Link`` header for one page of ``total`` items."""
    last = max((total + per_page - 1) // per_page, 1)

    def at(n: int) -> str:
        query = dict(url.query)
        query.update({"page": str(n), "per_page": str(per_page)})
        return f'<{url.with_query(None)}?{urlencode(query)}>'

    links = []
    if page < last:
        links += [f'{at(page + 1)}; rel="next"', f'{at(last)}; rel="last"']
    if page > 1:
        links += [f'{at(1)}; rel="first"', f'{at(min(page - 1, last))}; rel="prev"']
    return ", ".join(links) or None


def paginate(request: web.Request, items: list[Any], *, key: str | None = None,
             extra: Record | None = None) -> web.Response:
    """One page of ``items`` with a Link header; wrapped under ``key`` with a total_count if given."""
    page, per_page = page_params(request.query)
    chunk = items[(page - 1) * per_page: page * per_page]
    body: Any = chunk if key is None else {"total_count": len(items), key: chunk, **(extra or {})}
    response = json_response(body)
    link = link_header(request.url, page, per_page, len(items))
    if link:
        response.headers["Link"] = link
    return response


def json_response(body: Any, status: int = 200) -> web.Response:
    """A JSON response."""
    return web.Response(body=json.dumps(body).encode(), status=status, content_type="application/json")


async def read_json(request: web.Request, *, default: Any = None) -> Any:
    """The request's JSON body (400 ``Problems parsing JSON`` on bad input)."""
    raw = await request.read()
    if not raw:
        if default is not None:
            return default
        raise ApiError(400, "Problems parsing JSON")
    try:
        return json.loads(raw)
    except ValueError:
        raise ApiError(400, "Problems parsing JSON") from None


async def read_object(request: web.Request) -> Record:
    """The request's JSON body, which must be an object."""
    body = await read_json(request, default={})
    if not isinstance(body, dict):
        raise ApiError(400, "Problems parsing JSON")
    return body


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
        hub.requests[request.method] += 1
        if request.method in WRITE_METHODS and not request.path.endswith("/access_tokens"):
            hub.writes += 1
            hub.write_log.append(f"{request.method} {request.path}")
        if hub.faults.config.latency_seconds:
            await asyncio.sleep(hub.faults.config.latency_seconds)
        fault = hub.faults.api_fault(request.path)
        if fault is not None:
            return fault_response(hub, fault)
    try:
        request[ACTOR] = authenticate(hub, request)
        if not hook:
            check_grant(hub, request)
        response = await handler(request)
    except ApiError as exc:
        response = json_response(error_body(exc.status, exc.message, exc.errors), exc.status)
        response.headers.update(exc.headers)
    except NotFoundError:
        response = json_response(error_body(404, "Not Found"), 404)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = json_response(error_body(exc.status, exc.reason), exc.status)
    if hook or not isinstance(response, web.Response):
        return response
    response.headers.update(rate_headers(hub))
    response.headers["X-GitHub-Request-Id"] = uuid.uuid4().hex[:20].upper()
    response.headers["X-GitHub-Api-Version-Selected"] = "2022-11-28"
    if request.method == "GET" and response.status == 200 and response.body is not None:
        assert isinstance(response.body, bytes)
        tag = etag_for(response.body)
        response.headers["ETag"] = tag
        if etag_matches(request.headers.get("If-None-Match", ""), tag):
            hub.not_modified += 1
            headers = {k: v for k, v in response.headers.items() if k.lower() not in ("content-type", "content-length")}
            response = web.Response(status=304, headers=headers)
    if hub.observers:
        await observe(hub, request, response)
    return response


async def observe(hub: HubModel, request: web.Request, response: web.Response) -> None:
    """Show one answered API request to the hub's traffic observers."""
    body = response.body if isinstance(response.body, bytes) and response.content_type == "application/json" else None
    exchange = Exchange(method=request.method, path=request.raw_path.split("?", 1)[0], query=dict(request.query),
                        body=await request.read(), status=response.status,
                        response_body=None if response.status == 304 else body)
    for observer in hub.observers:
        observer.exchange(exchange)


def rate_headers(hub: HubModel) -> dict[str, str]:
    """Primary rate-limit headers (5000 an hour, counted from the requests served)."""
    used = sum(hub.requests.values()) - hub.not_modified
    reset = (int(time.time()) // 3600 + 1) * 3600
    return {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": str(max(5000 - used, 0)),
            "x-ratelimit-used": str(used), "x-ratelimit-reset": str(reset), "x-ratelimit-resource": "core"}


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


def authenticate(hub: HubModel, request: web.Request) -> Record:
    """Who is calling: ``{"kind": "app"|"installation"|"user"|"anonymous", "login": ..., ...}``."""
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


def need_app(request: web.Request) -> None:
    """Require App (JWT) authentication."""
    if request[ACTOR]["kind"] != "app":
        raise ApiError(401, "A JSON web token could not be decoded")


def writer(request: web.Request) -> str:
    """The login a write is attributed to (401 for anonymous callers)."""
    actor = request[ACTOR]
    if actor["kind"] in ("anonymous", "app"):
        raise ApiError(401, "Requires authentication")
    login: str = actor["login"]
    return login


def repo_name(request: web.Request) -> str:
    """``owner/name`` from the path, 404 if unknown."""
    full = f"{request.match_info['owner']}/{request.match_info['repo']}"
    return str(request.app[HUB].state.repo(full)["full_name"])


def number(request: web.Request, key: str = "number") -> int:
    """An integer path parameter."""
    try:
        return int(request.match_info[key])
    except ValueError:
        raise NotFoundError(key) from None


# ---- App ---------------------------------------------------------------------------

class Routes:
    """Route handlers bound to one FakeHub."""

    def __init__(self, hub: HubModel) -> None:
        self.hub = hub

    async def get_app(self, request: web.Request) -> web.Response:
        need_app(request)
        return json_response(render.app(self.hub.ctx))

    async def list_installations(self, request: web.Request) -> web.Response:
        need_app(request)
        items = [render.installation(self.hub.ctx, i) for i in self.hub.state.data["installations"].values()]
        return paginate(request, items)

    async def access_token(self, request: web.Request) -> web.Response:
        need_app(request)
        return json_response(self.hub.apps.issue_token(number(request, "id")), 201)

    async def repo_installation(self, request: web.Request) -> web.Response:
        need_app(request)
        repo = self.hub.state.repo(repo_name(request))
        return json_response(render.installation(self.hub.ctx, self.hub.state.installation(repo["installation_id"])))

    async def installation_repos(self, request: web.Request) -> web.Response:
        actor = request[ACTOR]
        if actor["kind"] != "installation":
            raise ApiError(403, "This endpoint requires an installation access token")
        repos = [render.repository(self.hub.ctx, r)
                 for r in self.hub.state.repos_of_installation(actor["installation_id"])]
        return paginate(request, repos, key="repositories", extra={"repository_selection": "all"})

    async def list_deliveries(self, request: web.Request) -> web.Response:
        need_app(request)
        items = sorted(self.hub.state.data["deliveries"].values(), key=lambda d: d["id"], reverse=True)
        return paginate(request, [render.delivery(d) for d in items])

    async def get_delivery(self, request: web.Request) -> web.Response:
        need_app(request)
        rec = self.hub.state.by_id("deliveries", number(request, "id"))
        out = render.delivery(rec)
        out["request"] = {"headers": {"X-GitHub-Event": rec["event"], "X-GitHub-Delivery": rec["guid"]},
                          "payload": json.loads(rec["body"])}
        out["response"] = {"headers": {}, "payload": None}
        return json_response(out)

    async def redeliver(self, request: web.Request) -> web.Response:
        need_app(request)
        self.hub.emitter.redeliver(number(request, "id"))
        return json_response({}, 202)

    async def manifest_conversion(self, request: web.Request) -> web.Response:
        return json_response(self.hub.apps.convert_manifest(request.match_info["code"]), 201)

    async def rate_limit(self, request: web.Request) -> web.Response:
        core = {k.removeprefix("x-ratelimit-"): int(v) for k, v in rate_headers(self.hub).items()
                if k != "x-ratelimit-resource"}
        return json_response({"resources": {"core": core}, "rate": core})

    # ---- repositories and issues ---------------------------------------------------
    async def get_repo(self, request: web.Request) -> web.Response:
        return json_response(render.repository(self.hub.ctx, self.hub.state.repo(repo_name(request))))

    async def list_issues(self, request: web.Request) -> web.Response:
        q = request.query
        items = self.hub.issues.find(repo_name(request), state=q.get("state", "open"), labels=q.get("labels"),
                                     direction=q.get("direction", "desc"), since=q.get("since"))
        return paginate(request, items)

    async def create_issue(self, request: web.Request) -> web.Response:
        body = await read_object(request)
        issue = self.hub.issues.create(repo_name(request), str(body.get("title") or ""), body.get("body"),
                                      user=writer(request), labels=names_list(body.get("labels", []), "labels"),
                                      assignees=names_list(body.get("assignees", []), "assignees"))
        return json_response(issue, 201)

    async def get_issue(self, request: web.Request) -> web.Response:
        return json_response(self.hub.issues.get(repo_name(request), number(request)))

    async def patch_issue(self, request: web.Request) -> web.Response:
        body = await read_object(request)
        return json_response(self.hub.issues.update(repo_name(request), number(request), body, actor=writer(request)))

    async def list_comments(self, request: web.Request) -> web.Response:
        return paginate(request, self.hub.comments.find(repo_name(request), number(request),
                                                        since=request.query.get("since")))

    async def create_comment(self, request: web.Request) -> web.Response:
        body = await read_object(request)
        comment = self.hub.comments.create(repo_name(request), number(request), str(body.get("body") or ""),
                                       user=writer(request))
        return json_response(comment, 201)

    async def get_comment(self, request: web.Request) -> web.Response:
        return json_response(self.hub.comments.get(repo_name(request), number(request, "id")))

    async def patch_comment(self, request: web.Request) -> web.Response:
        body = await read_object(request)
        return json_response(self.hub.comments.edit(repo_name(request), number(request, "id"), body.get("body"),
                                                   actor=writer(request)))

    async def delete_comment(self, request: web.Request) -> web.Response:
        self.hub.comments.delete(repo_name(request), number(request, "id"), actor=writer(request))
        return web.Response(status=204)

    async def add_labels(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        labels = self.hub.issues.add_labels(repo_name(request), number(request), names_list(body, "labels"),
                                     actor=writer(request))
        return json_response(labels)

    async def set_labels(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        labels = self.hub.issues.set_labels(repo_name(request), number(request), names_list(body, "labels"),
                                     actor=writer(request))
        return json_response(labels)

    async def remove_label(self, request: web.Request) -> web.Response:
        labels = self.hub.issues.remove_label(repo_name(request), number(request), request.match_info["name"],
                                       actor=writer(request))
        return json_response(labels)

    async def remove_all_labels(self, request: web.Request) -> web.Response:
        self.hub.issues.set_labels(repo_name(request), number(request), [], actor=writer(request))
        return web.Response(status=204)

    async def add_assignees(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        issue = self.hub.issues.change_assignees(repo_name(request), number(request), names_list(body, "assignees"),
                                                 add=True, actor=writer(request))
        return json_response(issue, 201)

    async def remove_assignees(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        issue = self.hub.issues.change_assignees(repo_name(request), number(request), names_list(body, "assignees"),
                                                 add=False, actor=writer(request))
        return json_response(issue)

    async def issue_reaction(self, request: web.Request) -> web.Response:
        body = await read_object(request)
        reaction, created = self.hub.reactions.add(repo_name(request), body.get("content"), actor=writer(request),
                                                  issue_number=number(request))
        return json_response(reaction, 201 if created else 200)

    async def comment_reaction(self, request: web.Request) -> web.Response:
        body = await read_object(request)
        reaction, created = self.hub.reactions.add(repo_name(request), body.get("content"), actor=writer(request),
                                                  comment_id=number(request, "id"))
        return json_response(reaction, 201 if created else 200)

    async def permission(self, request: web.Request) -> web.Response:
        return json_response(self.hub.repos.permission_json(repo_name(request), request.match_info["user"]))

    # ---- pulls ----------------------------------------------------------------------
    async def list_pulls(self, request: web.Request) -> web.Response:
        q = request.query
        items = self.hub.pulls.find(repo_name(request), state=q.get("state", "open"), head=q.get("head"),
                                    base=q.get("base"), direction=q.get("direction", "desc"))
        return paginate(request, items)

    async def create_pull(self, request: web.Request) -> web.Response:
        body = await read_object(request)
        return json_response(await self.hub.pulls.create(repo_name(request), body, actor=writer(request)), 201)

    async def request_reviewers(self, request: web.Request) -> web.Response:
        body = await read_object(request)
        return json_response(self.hub.pulls.request_reviewers(repo_name(request), number(request), body,
                                                        actor=writer(request)), 201)

    async def get_pull(self, request: web.Request) -> web.Response:
        return json_response(await self.hub.pulls.get(repo_name(request), number(request)))

    async def patch_pull(self, request: web.Request) -> web.Response:
        body = await read_object(request)
        return json_response(await self.hub.pulls.update(repo_name(request), number(request), body,
                                                        actor=writer(request)))

    async def merge_pull(self, request: web.Request) -> web.Response:
        body = await read_object(request)
        result = await self.hub.pulls.merge(repo_name(request), number(request), actor=writer(request),
                                           sha=body.get("sha"), merge_method=body.get("merge_method", "merge"),
                                           commit_title=body.get("commit_title"))
        return json_response(result)

    async def list_reviews(self, request: web.Request) -> web.Response:
        return paginate(request, self.hub.reviews.find(repo_name(request), number(request)))

    async def create_review(self, request: web.Request) -> web.Response:
        body = await read_object(request)
        return json_response(self.hub.reviews.create(repo_name(request), number(request), body,
                                                    actor=writer(request)))

    async def review_comments(self, request: web.Request) -> web.Response:
        return paginate(request, self.hub.reviews.comments(repo_name(request), number(request)))

    async def review_comments_of_review(self, request: web.Request) -> web.Response:
        return paginate(request, self.hub.reviews.comments(repo_name(request), number(request),
                                                               review_id=number(request, "review_id")))

    async def pull_files(self, request: web.Request) -> web.Response:
        return paginate(request, await self.hub.pulls.files(repo_name(request), number(request)))

    # ---- checks ----------------------------------------------------------------------
    async def create_check_run(self, request: web.Request) -> web.Response:
        if request[ACTOR]["kind"] != "installation":
            raise ApiError(403, "You must authenticate via a GitHub App.")
        body = await read_object(request)
        return json_response(await self.hub.checks.create_run(repo_name(request), body, actor=writer(request)), 201)

    async def patch_check_run(self, request: web.Request) -> web.Response:
        if request[ACTOR]["kind"] != "installation":
            raise ApiError(403, "You must authenticate via a GitHub App.")
        body = await read_object(request)
        return json_response(self.hub.checks.update_run(repo_name(request), number(request, "id"), body,
                                                       actor=writer(request)))

    async def get_check_run(self, request: web.Request) -> web.Response:
        return json_response(self.hub.checks.get_run(repo_name(request), number(request, "id")))

    async def check_run_annotations(self, request: web.Request) -> web.Response:
        return paginate(request, self.hub.checks.annotations(repo_name(request), number(request, "id")))

    async def ref_check_runs(self, request: web.Request) -> web.Response:
        q = request.query
        runs = await self.hub.checks.find_runs(repo_name(request), request.match_info["ref"],
                                              check_name=q.get("check_name"), status=q.get("status"),
                                              latest=q.get("filter", "latest") == "latest")
        return paginate(request, runs, key="check_runs")

    async def ref_check_suites(self, request: web.Request) -> web.Response:
        suites = await self.hub.checks.find_suites(repo_name(request), request.match_info["ref"])
        return paginate(request, suites, key="check_suites")

    async def ref_status(self, request: web.Request) -> web.Response:
        return json_response(await self.hub.statuses.combined(repo_name(request), request.match_info["ref"]))

    async def ref_statuses(self, request: web.Request) -> web.Response:
        sha = await self.hub.repos.resolve_ref(repo_name(request), request.match_info["ref"])
        return paginate(request, self.hub.statuses.find(repo_name(request), sha))

    async def job_logs(self, request: web.Request) -> web.Response:
        """Like GitHub: 302 to a short-lived signed URL on another host."""
        repo_name(request)
        if request[ACTOR]["kind"] == "anonymous":
            raise NotFoundError("job logs")
        location = self.hub.actions.log_location(self.hub.base_url, number(request, "id"))
        if location is None:
            raise NotFoundError("job")
        return web.Response(status=302, headers={"Location": location})

    async def hook_blob(self, request: web.Request) -> web.Response:
        """The storage host serving a signed log URL; it refuses any Authorization header."""
        self.hub.actions.blob_requests.append(dict(request.headers))
        if "Authorization" in request.headers:
            return web.Response(status=400, text="AuthenticationFailed: signed URLs take no Authorization header")
        text = self.hub.actions.signed_log(number(request, "id"), request.query.get("sig", ""))
        if text is None:
            return web.Response(status=403, text="AuthenticationFailed")
        return web.Response(text=text, content_type="text/plain")

    async def hook_rerun_failed_jobs(self, request: web.Request) -> web.Response:
        body = await read_object(request)
        try:
            ids = self.hub.actions.rerun_failed_jobs(repo_name(request), number(request, "id"),
                                                     user=body.get("user"))
        except LookupError as exc:
            raise ApiError(404, str(exc)) from None
        return json_response({"check_run_ids": ids}, 201)

    async def create_status(self, request: web.Request) -> web.Response:
        body = await read_object(request)
        sha = await self.hub.repos.resolve_ref(repo_name(request), request.match_info["sha"])
        return json_response(self.hub.statuses.create(repo_name(request), sha, body, actor=writer(request)), 201)

    # ---- test and admin hooks -------------------------------------------------------
    async def hook_info(self, request: web.Request) -> web.Response:
        return json_response({"api_url": self.hub.api_url, "git_url_template": self.hub.git_url_template,
                              "app_id": self.hub.app.id, "app_slug": self.hub.app.slug,
                              "bot_login": self.hub.app.bot_login})

    async def hook_create_repo(self, request: web.Request) -> web.Response:
        body = await read_object(request)
        files = body.get("files") or {}
        if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
            raise ApiError(422, "files must map paths to text")
        kwargs: Record = {}
        if "ci_command" in body:
            kwargs["ci_command"] = body["ci_command"]
        repo = await self.hub.repos.create(str(body.get("full_name", "")), files,
                                          default_branch=str(body.get("default_branch", "main")),
                                          private=bool(body.get("private", False)), **kwargs)
        return json_response(repo, 201)

    async def hook_create_issue(self, request: web.Request) -> web.Response:
        body = await read_object(request)
        issue = self.hub.issues.create(repo_name(request), str(body.get("title") or ""), body.get("body", ""),
                                      user=body.get("user"), labels=names_list(body.get("labels", []), "labels"),
                                      assignees=names_list(body.get("assignees", []), "assignees"))
        return json_response(issue, 201)

    async def hook_comment(self, request: web.Request) -> web.Response:
        body = await read_object(request)
        comment = self.hub.comments.create(repo_name(request), number(request), str(body.get("body") or ""),
                                       user=body.get("user"))
        return json_response(comment, 201)

    async def hook_permission(self, request: web.Request) -> web.Response:
        body = await read_object(request)
        self.hub.repos.set_permission(repo_name(request), request.match_info["user"], str(body.get("permission")))
        return json_response(self.hub.repos.permission_json(repo_name(request), request.match_info["user"]))

    async def hook_merge(self, request: web.Request) -> web.Response:
        body = await read_object(request)
        result = await self.hub.pulls.merge(repo_name(request), number(request), actor=body.get("user"),
                                           merge_method=body.get("merge_method", "merge"))
        return json_response(result)

    async def hook_requested_action(self, request: web.Request) -> web.Response:
        body = await read_object(request)
        self.hub.checks.request_action(repo_name(request), number(request, "id"), str(body.get("identifier")),
                                user=body.get("user"))
        return json_response({}, 202)

    async def hook_get_faults(self, request: web.Request) -> web.Response:
        return json_response(self.hub.faults.config.to_dict())

    async def hook_set_faults(self, request: web.Request) -> web.Response:
        try:
            config = FaultConfig.from_dict(await read_object(request))
        except ValueError as exc:
            raise ApiError(422, str(exc)) from None
        self.hub.faults.configure(config)
        return json_response(config.to_dict())

    async def hook_counters(self, request: web.Request) -> web.Response:
        return json_response(self.hub.counters())

    async def hook_reset_counters(self, request: web.Request) -> web.Response:
        self.hub.reset_counters()
        return json_response(self.hub.counters())

    async def hook_deliveries(self, request: web.Request) -> web.Response:
        return json_response(self.hub.emitted(request.query.get("event"), request.query.get("action")))

    async def hook_wait_idle(self, request: web.Request) -> web.Response:
        try:
            await self.hub.wait_idle(float(request.query.get("timeout", 60)))
        except TimeoutError as exc:
            raise ApiError(504, str(exc)) from None
        return json_response({"idle": True})

    async def hook_push(self, request: web.Request) -> web.Response:
        body = await read_object(request)
        updates = body.get("updates")
        if not isinstance(updates, list):
            raise ApiError(422, "updates must be a list")
        await self.hub.pushes.record(str(body.get("repository")), updates, pusher=body.get("pusher") or None)
        return json_response({"ok": True})

    async def hook_manifest(self, request: web.Request) -> web.Response:
        body = await read_object(request)
        manifest = body.get("manifest", body)
        if not isinstance(manifest, dict):
            raise ApiError(422, "manifest must be an object")
        return json_response({"code": self.hub.apps.create_manifest_code(manifest)}, 201)

    async def hook_ci_command(self, request: web.Request) -> web.Response:
        body = await read_object(request)
        command = body.get("ci_command")
        if command is not None and not isinstance(command, str):
            raise ApiError(422, "ci_command must be a string or null")
        self.hub.repos.set_ci_command(repo_name(request), command)
        return json_response({"ci_command": command})


def create_app(hub: HubModel) -> web.Application:
    """Build the aiohttp application serving ``hub``."""
    app = web.Application(middlewares=[api_middleware], client_max_size=32 * 1024 * 1024)
    app[HUB] = hub
    r = Routes(hub)
    repo = "/repos/{owner}/{repo}"
    add = app.router.add_route
    add("GET", "/app", r.get_app)
    add("GET", "/app/installations", r.list_installations)
    add("POST", "/app/installations/{id}/access_tokens", r.access_token)
    add("GET", repo + "/installation", r.repo_installation)
    add("GET", "/installation/repositories", r.installation_repos)
    add("GET", "/app/hook/deliveries", r.list_deliveries)
    add("GET", "/app/hook/deliveries/{id}", r.get_delivery)
    add("POST", "/app/hook/deliveries/{id}/attempts", r.redeliver)
    add("POST", "/app-manifests/{code}/conversions", r.manifest_conversion)
    add("GET", "/rate_limit", r.rate_limit)
    add("GET", repo, r.get_repo)
    add("GET", repo + "/issues", r.list_issues)
    add("POST", repo + "/issues", r.create_issue)
    add("GET", repo + "/issues/comments/{id}", r.get_comment)
    add("PATCH", repo + "/issues/comments/{id}", r.patch_comment)
    add("DELETE", repo + "/issues/comments/{id}", r.delete_comment)
    add("POST", repo + "/issues/comments/{id}/reactions", r.comment_reaction)
    add("GET", repo + "/issues/{number}", r.get_issue)
    add("PATCH", repo + "/issues/{number}", r.patch_issue)
    add("GET", repo + "/issues/{number}/comments", r.list_comments)
    add("POST", repo + "/issues/{number}/comments", r.create_comment)
    add("POST", repo + "/issues/{number}/labels", r.add_labels)
    add("PUT", repo + "/issues/{number}/labels", r.set_labels)
    add("DELETE", repo + "/issues/{number}/labels", r.remove_all_labels)
    add("DELETE", repo + "/issues/{number}/labels/{name}", r.remove_label)
    add("POST", repo + "/issues/{number}/assignees", r.add_assignees)
    add("DELETE", repo + "/issues/{number}/assignees", r.remove_assignees)
    add("POST", repo + "/issues/{number}/reactions", r.issue_reaction)
    add("GET", repo + "/collaborators/{user}/permission", r.permission)
    add("GET", repo + "/pulls", r.list_pulls)
    add("POST", repo + "/pulls", r.create_pull)
    add("GET", repo + "/pulls/{number}", r.get_pull)
    add("PATCH", repo + "/pulls/{number}", r.patch_pull)
    add("PUT", repo + "/pulls/{number}/merge", r.merge_pull)
    add("POST", repo + "/pulls/{number}/requested_reviewers", r.request_reviewers)
    add("GET", repo + "/pulls/{number}/reviews", r.list_reviews)
    add("POST", repo + "/pulls/{number}/reviews", r.create_review)
    add("GET", repo + "/pulls/{number}/reviews/{review_id}/comments", r.review_comments_of_review)
    add("GET", repo + "/pulls/{number}/comments", r.review_comments)
    add("GET", repo + "/pulls/{number}/files", r.pull_files)
    add("POST", repo + "/check-runs", r.create_check_run)
    add("GET", repo + "/check-runs/{id}", r.get_check_run)
    add("PATCH", repo + "/check-runs/{id}", r.patch_check_run)
    add("GET", repo + "/check-runs/{id}/annotations", r.check_run_annotations)
    add("GET", repo + "/commits/{ref:.+}/check-runs", r.ref_check_runs)
    add("GET", repo + "/commits/{ref:.+}/check-suites", r.ref_check_suites)
    add("GET", repo + "/commits/{ref:.+}/status", r.ref_status)
    add("POST", repo + "/statuses/{sha}", r.create_status)
    add("GET", repo + "/commits/{ref:.+}/statuses", r.ref_statuses)
    add("GET", repo + "/actions/jobs/{id}/logs", r.job_logs)
    hook = "/_fakehub"
    hrepo = hook + "/repos/{owner}/{repo}"
    add("GET", hook + "/info", r.hook_info)
    add("POST", hook + "/repos", r.hook_create_repo)
    add("POST", hrepo + "/issues", r.hook_create_issue)
    add("POST", hrepo + "/issues/{number}/comments", r.hook_comment)
    add("PUT", hrepo + "/permissions/{user}", r.hook_permission)
    add("POST", hrepo + "/pulls/{number}/merge", r.hook_merge)
    add("POST", hrepo + "/check-runs/{id}/requested-action", r.hook_requested_action)
    add("PUT", hrepo + "/ci", r.hook_ci_command)
    add("POST", hrepo + "/check-suites/{id}/rerun-failed-jobs", r.hook_rerun_failed_jobs)
    add("GET", hook + "/blobs/job-logs/{id}", r.hook_blob)
    add("GET", hook + "/faults", r.hook_get_faults)
    add("POST", hook + "/faults", r.hook_set_faults)
    add("GET", hook + "/counters", r.hook_counters)
    add("POST", hook + "/counters/reset", r.hook_reset_counters)
    add("GET", hook + "/deliveries", r.hook_deliveries)
    add("POST", hook + "/wait-idle", r.hook_wait_idle)
    add("POST", hook + "/git/push", r.hook_push)
    add("POST", hook + "/app-manifests", r.hook_manifest)
    return app
