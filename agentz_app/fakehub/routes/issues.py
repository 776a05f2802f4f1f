"""Issue routes: issues, comments, labels, assignees and reactions."""

from __future__ import annotations

from aiohttp import web

from agentz_app.fakehub.errors import names_list
from agentz_app.fakehub.model import HubModel
from agentz_app.fakehub.routes.common import json_response, number, paginate, read_json, read_object, repo_name, writer


class IssueRoutes:
    """Handlers bound to one fake GitHub."""

    def __init__(self, hub: HubModel) -> None:
        self.hub = hub

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


def register(app: web.Application, hub: HubModel) -> None:
    """Add the issues routes serving ``hub`` to ``app``."""
    r = IssueRoutes(hub)
    add = app.router.add_route
    repo = "/repos/{owner}/{repo}"
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
