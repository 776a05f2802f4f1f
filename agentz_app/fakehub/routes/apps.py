"""App routes: the App, its installations, tokens, webhook deliveries, manifests and the rate limit."""

from __future__ import annotations

import json

from aiohttp import web

from agentz_app.fakehub import render
from agentz_app.fakehub.errors import ApiError
from agentz_app.fakehub.model import HubModel
from agentz_app.fakehub.routes.common import ACTOR, json_response, need_app, number, paginate, rate_headers, repo_name


class AppRoutes:
    """Handlers bound to one fake GitHub."""

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


def register(app: web.Application, hub: HubModel) -> None:
    """Add the apps routes serving ``hub`` to ``app``."""
    r = AppRoutes(hub)
    add = app.router.add_route
    repo = "/repos/{owner}/{repo}"
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
