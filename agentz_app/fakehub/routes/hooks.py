"""``/_fakehub`` routes: what tests and the demo do as GitHub users, admins or GitHub itself."""

from __future__ import annotations

import asyncio

from aiohttp import web

from agentz_app.fakehub.errors import ApiError, names_list
from agentz_app.fakehub.faults import FaultConfig
from agentz_app.fakehub.model import HubModel
from agentz_app.fakehub.routes.common import json_response, number, read_object, repo_name
from agentz_app.fakehub.state import Record


class HookRoutes:
    """Handlers bound to one fake GitHub."""

    def __init__(self, hub: HubModel) -> None:
        self.hub = hub

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
            async with asyncio.timeout(float(request.query.get("timeout", 60))):
                await self.hub.wait_idle()
        except TimeoutError:
            raise ApiError(504, f"not idle: {self.hub.activity()}") from None
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


def register(app: web.Application, hub: HubModel) -> None:
    """Add the hooks routes serving ``hub`` to ``app``."""
    r = HookRoutes(hub)
    add = app.router.add_route
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
