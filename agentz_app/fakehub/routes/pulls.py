"""Pull request routes: pull requests, merging, review requests, reviews and changed files."""

from __future__ import annotations

from aiohttp import web

from agentz_app.fakehub.model import HubModel
from agentz_app.fakehub.routes.common import json_response, number, paginate, read_object, repo_name, writer


class PullRoutes:
    """Handlers bound to one fake GitHub."""

    def __init__(self, hub: HubModel) -> None:
        self.hub = hub

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


def register(app: web.Application, hub: HubModel) -> None:
    """Add the pulls routes serving ``hub`` to ``app``."""
    r = PullRoutes(hub)
    add = app.router.add_route
    repo = "/repos/{owner}/{repo}"
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
