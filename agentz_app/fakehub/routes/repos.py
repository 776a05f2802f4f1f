"""Repository routes: the repository and its collaborators' permissions."""

from __future__ import annotations

from aiohttp import web

from agentz_app.fakehub import render
from agentz_app.fakehub.model import HubModel
from agentz_app.fakehub.routes.common import json_response, repo_name


class RepoRoutes:
    """Handlers bound to one fake GitHub."""

    def __init__(self, hub: HubModel) -> None:
        self.hub = hub

    async def get_repo(self, request: web.Request) -> web.Response:
        return json_response(render.repository(self.hub.ctx, self.hub.state.repo(repo_name(request))))

    async def permission(self, request: web.Request) -> web.Response:
        return json_response(self.hub.repos.permission_json(repo_name(request), request.match_info["user"]))


def register(app: web.Application, hub: HubModel) -> None:
    """Add the repos routes serving ``hub`` to ``app``."""
    r = RepoRoutes(hub)
    add = app.router.add_route
    repo = "/repos/{owner}/{repo}"
    add("GET", repo, r.get_repo)
    add("GET", repo + "/collaborators/{user}/permission", r.permission)
