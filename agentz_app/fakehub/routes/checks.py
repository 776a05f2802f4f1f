"""Check and status routes: check runs and suites, commit statuses and job logs."""

from __future__ import annotations

from aiohttp import web

from agentz_app.fakehub.errors import ApiError
from agentz_app.fakehub.model import HubModel
from agentz_app.fakehub.routes.common import ACTOR, json_response, number, paginate, read_object, repo_name, writer
from agentz_app.fakehub.state import NotFoundError


class CheckRoutes:
    """Handlers bound to one fake GitHub."""

    def __init__(self, hub: HubModel) -> None:
        self.hub = hub

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

    async def create_status(self, request: web.Request) -> web.Response:
        body = await read_object(request)
        sha = await self.hub.repos.resolve_ref(repo_name(request), request.match_info["sha"])
        return json_response(self.hub.statuses.create(repo_name(request), sha, body, actor=writer(request)), 201)


def register(app: web.Application, hub: HubModel) -> None:
    """Add the checks routes serving ``hub`` to ``app``."""
    r = CheckRoutes(hub)
    add = app.router.add_route
    repo = "/repos/{owner}/{repo}"
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
