"""What every fake GitHub route shares: the hub and caller keys, JSON bodies, paging and path parameters."""

from __future__ import annotations

import json
import time
from typing import Any, Literal, NotRequired, TypedDict
from urllib.parse import urlencode

from aiohttp import web

from agentz_app.fakehub.errors import ApiError
from agentz_app.fakehub.model import HubModel
from agentz_app.fakehub.state import NotFoundError, Record

HUB: web.AppKey[HubModel] = web.AppKey("hub", HubModel)


class Caller(TypedDict):
    """Who is calling: an App (JWT), an installation token, a user (token or test header) or nobody."""

    kind: Literal["app", "installation", "user", "anonymous"]
    login: str | None
    installation_id: NotRequired[int]


ACTOR: web.RequestKey[Caller] = web.RequestKey("actor", Caller)
DOCS = "https://docs.github.com/rest"


def error_body(status: int, message: str, errors: list[Any] | None = None) -> Record:
    """GitHub's JSON error body."""
    body: Record = {"message": message, "documentation_url": DOCS, "status": str(status)}
    if errors:
        body["errors"] = errors
    return body


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


def rate_headers(hub: HubModel) -> dict[str, str]:
    """Primary rate-limit headers (5000 an hour, counted from the requests served)."""
    used = sum(hub.requests.values()) - hub.not_modified
    reset = (int(time.time()) // 3600 + 1) * 3600
    return {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": str(max(5000 - used, 0)),
            "x-ratelimit-used": str(used), "x-ratelimit-reset": str(reset), "x-ratelimit-resource": "core"}


def need_app(request: web.Request) -> None:
    """Require App (JWT) authentication."""
    if request[ACTOR]["kind"] != "app":
        raise ApiError(401, "A JSON web token could not be decoded")


def writer(request: web.Request) -> str:
    """The login a write is attributed to (401 for anonymous callers)."""
    actor = request[ACTOR]
    login = actor["login"]
    if actor["kind"] in ("anonymous", "app") or login is None:
        raise ApiError(401, "Requires authentication")
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
