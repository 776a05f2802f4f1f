"""Pure functions turning fake GitHub records into GitHub-shaped JSON (REST and webhooks)."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from agentz_app.fakehub.grants import ALL_PERMISSIONS, EVENT_GRANTS
from agentz_app.fakehub.state import HubState, Record


@dataclass
class AppInfo:
    """The GitHub App the fake hosts."""

    id: int
    slug: str
    name: str = ""
    owner: str = "fakehub"
    permissions: dict[str, str] = field(default_factory=lambda: dict(ALL_PERMISSIONS))
    """What the App was granted (from its manifest); everything fakehub serves by default."""
    events: list[str] = field(default_factory=lambda: sorted(EVENT_GRANTS))
    """The events the App subscribes to; every event fakehub emits by default."""

    @property
    def bot_login(self) -> str:
        """The login writes made with an installation token are attributed to."""
        return f"{self.slug}[bot]"


@dataclass(frozen=True)
class Ctx:
    """What every renderer needs: the state, the server root URL and the App."""

    state: HubState
    base_url: str
    app: AppInfo


def node_id(kind: str, record_id: int) -> str:
    """A stable opaque node id like GitHub's GraphQL ids."""
    return base64.b64encode(f"0:{kind}{record_id}".encode()).decode().rstrip("=")


def user(ctx: Ctx, login: str) -> Record:
    """A simple-user object."""
    rec = ctx.state.user(login, kind="Bot" if login.endswith("[bot]") else "User")
    api = f"{ctx.base_url}/users/{login}"
    return {
        "login": login,
        "id": rec["id"],
        "node_id": node_id("U", rec["id"]),
        "type": rec["type"],
        "site_admin": False,
        "avatar_url": f"{ctx.base_url}/avatars/{login}",
        "gravatar_id": "",
        "url": api,
        "html_url": f"{ctx.base_url}/{login}",
        "followers_url": f"{api}/followers",
        "following_url": f"{api}/following{{/other_user}}",
        "gists_url": f"{api}/gists{{/gist_id}}",
        "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{api}/subscriptions",
        "organizations_url": f"{api}/orgs",
        "repos_url": f"{api}/repos",
        "events_url": f"{api}/events{{/privacy}}",
        "received_events_url": f"{api}/received_events",
        "user_view_type": "public",
    }


def app(ctx: Ctx) -> Record:
    """The App object (``GET /app``, ``performed_via_github_app``, check runs)."""
    return {
        "id": ctx.app.id,
        "slug": ctx.app.slug,
        "node_id": node_id("A", ctx.app.id),
        "name": ctx.app.name or ctx.app.slug,
        "owner": user(ctx, ctx.app.owner),
        "description": "",
        "external_url": ctx.base_url,
        "html_url": f"{ctx.base_url}/apps/{ctx.app.slug}",
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z",
        "permissions": dict(ctx.app.permissions),
        "events": list(ctx.app.events),
        "installations_count": len(ctx.state.data["installations"]),
    }


def repository(ctx: Ctx, repo: Record) -> Record:
    """A full repository object."""
    full = repo["full_name"]
    out = minimal_repository(ctx, repo)
    open_issues = sum(1 for r in ctx.state.issues_of(full).values() if r["state"] == "open")
    out.update({
        "clone_url": repo["clone_url"],
        "git_url": repo["clone_url"],
        "ssh_url": repo["clone_url"],
        "svn_url": f"{ctx.base_url}/{full}",
        "mirror_url": None,
        "homepage": None,
        "language": None,
        "license": None,
        "size": 0,
        "topics": [],
        "forks": 0,
        "forks_count": 0,
        "network_count": 0,
        "stargazers_count": 0,
        "watchers": 0,
        "watchers_count": 0,
        "subscribers_count": 0,
        "open_issues": open_issues,
        "open_issues_count": open_issues,
        "has_issues": True,
        "has_projects": False,
        "has_wiki": False,
        "has_pages": False,
        "has_downloads": False,
        "has_discussions": False,
        "default_branch": repo["default_branch"],
        "visibility": "private" if repo.get("private") else "public",
        "archived": False,
        "disabled": False,
        "created_at": repo["created_at"],
        "updated_at": repo["updated_at"],
        "pushed_at": repo.get("pushed_at"),
        "permissions": {"admin": False, "maintain": False, "push": True, "triage": True, "pull": True},
    })
    return out


def minimal_repository(ctx: Ctx, repo: Record) -> Record:
    """The minimal repository object (check suites, installation repository lists embed it)."""
    full = repo["full_name"]
    api = f"{ctx.base_url}/repos/{full}"
    templated = {
        "archive_url": "/{archive_format}{/ref}", "assignees_url": "/assignees{/user}",
        "blobs_url": "/git/blobs{/sha}", "branches_url": "/branches{/branch}",
        "collaborators_url": "/collaborators{/collaborator}", "comments_url": "/comments{/number}",
        "commits_url": "/commits{/sha}", "compare_url": "/compare/{base}...{head}",
        "contents_url": "/contents/{+path}", "contributors_url": "/contributors", "deployments_url": "/deployments",
        "downloads_url": "/downloads", "events_url": "/events", "forks_url": "/forks",
        "git_commits_url": "/git/commits{/sha}", "git_refs_url": "/git/refs{/sha}", "git_tags_url": "/git/tags{/sha}",
        "hooks_url": "/hooks", "issue_comment_url": "/issues/comments{/number}",
        "issue_events_url": "/issues/events{/number}", "issues_url": "/issues{/number}", "keys_url": "/keys{/key_id}",
        "labels_url": "/labels{/name}", "languages_url": "/languages", "merges_url": "/merges",
        "milestones_url": "/milestones{/number}", "notifications_url": "/notifications{?since,all,participating}",
        "pulls_url": "/pulls{/number}", "releases_url": "/releases{/id}", "stargazers_url": "/stargazers",
        "statuses_url": "/statuses/{sha}", "subscribers_url": "/subscribers", "subscription_url": "/subscription",
        "tags_url": "/tags", "teams_url": "/teams", "trees_url": "/git/trees{/sha}",
    }
    out: Record = {
        "id": repo["id"],
        "node_id": node_id("R", repo["id"]),
        "name": repo["name"],
        "full_name": full,
        "private": bool(repo.get("private")),
        "owner": user(ctx, repo["owner"]),
        "html_url": f"{ctx.base_url}/{full}",
        "description": repo.get("description"),
        "fork": False,
        "url": api,
    }
    out.update({key: api + suffix for key, suffix in templated.items()})
    return out


def label(ctx: Ctx, full_name: str, name: str) -> Record:
    """A label object."""
    rec = ctx.state.label(full_name, name)
    return {
        "id": rec["id"],
        "node_id": node_id("L", rec["id"]),
        "url": f"{ctx.base_url}/repos/{full_name}/labels/{rec['name']}",
        "name": rec["name"],
        "color": rec["color"],
        "default": False,
        "description": rec["description"],
    }


def _via_app(ctx: Ctx, rec: Record) -> Record | None:
    return app(ctx) if rec.get("via_app") else None


def issue(ctx: Ctx, rec: Record) -> Record:
    """An issue object; pull requests carry a ``pull_request`` key like GitHub's issues API."""
    full = rec["repo"]
    kind = "pull" if rec.get("pull") else "issues"
    comments = sum(1 for c in ctx.state.data["comments"].values()
                   if c["repo"] == full and c["issue_number"] == rec["number"])
    out: Record = {
        "id": rec["id"],
        "node_id": node_id("I", rec["id"]),
        "url": f"{ctx.base_url}/repos/{full}/issues/{rec['number']}",
        "repository_url": f"{ctx.base_url}/repos/{full}",
        "comments_url": f"{ctx.base_url}/repos/{full}/issues/{rec['number']}/comments",
        "labels_url": f"{ctx.base_url}/repos/{full}/issues/{rec['number']}/labels{{/name}}",
        "events_url": f"{ctx.base_url}/repos/{full}/issues/{rec['number']}/events",
        "timeline_url": f"{ctx.base_url}/repos/{full}/issues/{rec['number']}/timeline",
        "html_url": f"{ctx.base_url}/{full}/{kind}/{rec['number']}",
        "number": rec["number"],
        "title": rec["title"],
        "body": rec["body"],
        "user": user(ctx, rec["user"]),
        "labels": [label(ctx, full, name) for name in rec["labels"]],
        "state": rec["state"],
        "state_reason": rec.get("state_reason"),
        "locked": False,
        "active_lock_reason": None,
        "milestone": None,
        "assignee": user(ctx, rec["assignees"][0]) if rec["assignees"] else None,
        "assignees": [user(ctx, login) for login in rec["assignees"]],
        "comments": comments,
        "reactions": reactions(ctx, f"{ctx.base_url}/repos/{full}/issues/{rec['number']}/reactions",
                               issue_number=rec["number"], repo=full),
        "created_at": rec["created_at"],
        "updated_at": rec["updated_at"],
        "closed_at": rec.get("closed_at"),
        "author_association": author_association(ctx, full, rec["user"]),
        "performed_via_github_app": _via_app(ctx, rec),
    }
    if rec.get("pull"):
        pull = rec["pull"]
        out["pull_request"] = {
            "url": f"{ctx.base_url}/repos/{full}/pulls/{rec['number']}",
            "html_url": f"{ctx.base_url}/{full}/pull/{rec['number']}",
            "diff_url": f"{ctx.base_url}/{full}/pull/{rec['number']}.diff",
            "patch_url": f"{ctx.base_url}/{full}/pull/{rec['number']}.patch",
            "merged_at": pull.get("merged_at"),
        }
        out["draft"] = bool(pull.get("draft"))
    return out


def reactions(ctx: Ctx, url: str, *, repo: str, issue_number: int | None = None,
              comment_id: int | None = None) -> Record:
    """The reaction roll-up of an issue or comment."""
    found = [r["content"] for r in ctx.state.data["reactions"].values()
             if r["repo"] == repo and r.get("issue_number") == issue_number and r.get("comment_id") == comment_id]
    out: Record = {"url": url, "total_count": len(found)}
    for content in ("+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"):
        out[content] = found.count(content)
    return out


def author_association(ctx: Ctx, full_name: str, login: str) -> str:
    """OWNER, COLLABORATOR, CONTRIBUTOR-like association of a user with a repository."""
    role = ctx.state.permission(full_name, login)
    if role == "admin" and login == ctx.state.repo(full_name)["owner"]:
        return "OWNER"
    if role in ("admin", "maintain", "write", "triage"):
        return "COLLABORATOR"
    return "NONE"


def pull_request(ctx: Ctx, rec: Record) -> Record:
    """A pull request object."""
    full = rec["repo"]
    repo = ctx.state.repo(full)
    pull = rec["pull"]
    repo_json = repository(ctx, repo)
    out = issue(ctx, rec)
    for key in ("pull_request", "repository_url", "reactions", "events_url", "labels_url", "timeline_url",
                "comments", "state_reason"):
        out.pop(key, None)
    api = f"{ctx.base_url}/repos/{full}"
    html = f"{ctx.base_url}/{full}/pull/{rec['number']}"
    out.update({
        "url": f"{api}/pulls/{rec['number']}",
        "html_url": html,
        "diff_url": f"{html}.diff",
        "patch_url": f"{html}.patch",
        "issue_url": f"{api}/issues/{rec['number']}",
        "commits_url": f"{api}/pulls/{rec['number']}/commits",
        "review_comments_url": f"{api}/pulls/{rec['number']}/comments",
        "review_comment_url": f"{api}/pulls/comments{{/number}}",
        "comments_url": f"{api}/issues/{rec['number']}/comments",
        "statuses_url": f"{api}/statuses/{pull['head_sha']}",
        "_links": {name: {"href": href} for name, href in (
            ("self", f"{api}/pulls/{rec['number']}"), ("html", html), ("issue", f"{api}/issues/{rec['number']}"),
            ("comments", f"{api}/issues/{rec['number']}/comments"),
            ("review_comments", f"{api}/pulls/{rec['number']}/comments"),
            ("review_comment", f"{api}/pulls/comments{{/number}}"),
            ("commits", f"{api}/pulls/{rec['number']}/commits"), ("statuses", f"{api}/statuses/{pull['head_sha']}"))},
        "auto_merge": None,
        "active_lock_reason": None,
        "requested_teams": [],
        "comments": sum(1 for c in ctx.state.data["comments"].values()
                        if c["repo"] == full and c["issue_number"] == rec["number"]),
        "additions": pull.get("additions", 0),
        "deletions": pull.get("deletions", 0),
        "changed_files": pull.get("changed_files", 0),
        "rebaseable": pull.get("mergeable", True),
        "head": {
            "label": f"{pull['head_owner']}:{pull['head_ref']}",
            "ref": pull["head_ref"],
            "sha": pull["head_sha"],
            "user": user(ctx, pull["head_owner"]),
            "repo": repo_json,
        },
        "base": {
            "label": f"{repo['owner']}:{pull['base_ref']}",
            "ref": pull["base_ref"],
            "sha": pull.get("base_sha", ""),
            "user": user(ctx, repo["owner"]),
            "repo": repo_json,
        },
        "draft": bool(pull.get("draft")),
        "merged": bool(pull.get("merged")),
        "merged_at": pull.get("merged_at"),
        "merged_by": user(ctx, pull["merged_by"]) if pull.get("merged_by") else None,
        "merge_commit_sha": pull.get("merge_commit_sha"),
        "mergeable": pull.get("mergeable", True),
        "mergeable_state": "clean" if pull.get("mergeable", True) else "dirty",
        "maintainer_can_modify": False,
        "requested_reviewers": [user(ctx, login) for login in pull.get("requested_reviewers", [])],
        "review_comments": sum(1 for c in ctx.state.data["review_comments"].values()
                               if c["repo"] == full and c["pull_number"] == rec["number"]),
        "commits": pull.get("commits", 1),
    })
    return out


def pull_request_minimal(ctx: Ctx, rec: Record) -> Record:
    """The short pull request form used in check run / suite ``pull_requests``."""
    full = rec["repo"]
    repo = ctx.state.repo(full)
    short_repo = {"id": repo["id"], "url": f"{ctx.base_url}/repos/{full}", "name": repo["name"]}
    return {
        "url": f"{ctx.base_url}/repos/{full}/pulls/{rec['number']}",
        "id": rec["id"],
        "number": rec["number"],
        "head": {"ref": rec["pull"]["head_ref"], "sha": rec["pull"]["head_sha"], "repo": short_repo},
        "base": {"ref": rec["pull"]["base_ref"], "sha": rec["pull"].get("base_sha", ""), "repo": short_repo},
    }


def diff_entry(ctx: Ctx, full_name: str, head_sha: str, entry: Record) -> Record:
    """A changed file of a pull request (``GET .../pulls/{n}/files``)."""
    path = entry["filename"]
    return {**entry, "sha": entry.get("sha") or "0" * 40,
            "blob_url": f"{ctx.base_url}/{full_name}/blob/{head_sha}/{path}",
            "raw_url": f"{ctx.base_url}/{full_name}/raw/{head_sha}/{path}",
            "contents_url": f"{ctx.base_url}/repos/{full_name}/contents/{path}?ref={head_sha}"}


def commit_stub(ctx: Ctx, full_name: str, sha: str, when: str) -> Record:
    """A commit object with its identity and links (authorship left blank): ``status`` payloads embed one."""
    api = f"{ctx.base_url}/repos/{full_name}"
    person = {"name": "fakehub", "email": "fakehub@users.noreply.invalid", "date": when}
    return {"sha": sha, "node_id": node_id("C", int(sha[:8], 16)), "url": f"{api}/commits/{sha}",
            "html_url": f"{ctx.base_url}/{full_name}/commit/{sha}", "comments_url": f"{api}/commits/{sha}/comments",
            "author": None, "committer": None, "parents": [],
            "commit": {"author": person, "committer": person, "message": "", "comment_count": 0,
                       "url": f"{api}/git/commits/{sha}", "tree": {"sha": sha, "url": f"{api}/git/trees/{sha}"},
                       "verification": {"verified": False, "reason": "unsigned", "signature": None,
                                        "payload": None, "verified_at": None}}}


def comment(ctx: Ctx, rec: Record) -> Record:
    """An issue comment object."""
    full = rec["repo"]
    return {
        "id": rec["id"],
        "node_id": node_id("IC", rec["id"]),
        "url": f"{ctx.base_url}/repos/{full}/issues/comments/{rec['id']}",
        "html_url": f"{ctx.base_url}/{full}/issues/{rec['issue_number']}#issuecomment-{rec['id']}",
        "issue_url": f"{ctx.base_url}/repos/{full}/issues/{rec['issue_number']}",
        "body": rec["body"],
        "user": user(ctx, rec["user"]),
        "created_at": rec["created_at"],
        "updated_at": rec["updated_at"],
        "author_association": author_association(ctx, full, rec["user"]),
        "performed_via_github_app": _via_app(ctx, rec),
        "reactions": reactions(ctx, f"{ctx.base_url}/repos/{full}/issues/comments/{rec['id']}/reactions",
                               repo=full, comment_id=rec["id"]),
    }


def review(ctx: Ctx, rec: Record) -> Record:
    """A pull request review object."""
    full = rec["repo"]
    return {
        "id": rec["id"],
        "node_id": node_id("PRR", rec["id"]),
        "user": user(ctx, rec["user"]),
        "body": rec["body"],
        "state": rec["state"],
        "commit_id": rec["commit_id"],
        "submitted_at": rec["submitted_at"],
        "html_url": f"{ctx.base_url}/{full}/pull/{rec['pull_number']}#pullrequestreview-{rec['id']}",
        "pull_request_url": f"{ctx.base_url}/repos/{full}/pulls/{rec['pull_number']}",
        "author_association": author_association(ctx, full, rec["user"]),
        "_links": {"html": {"href": f"{ctx.base_url}/{full}/pull/{rec['pull_number']}#pullrequestreview-{rec['id']}"},
                   "pull_request": {"href": f"{ctx.base_url}/repos/{full}/pulls/{rec['pull_number']}"}},
    }


def review_comment(ctx: Ctx, rec: Record) -> Record:
    """An inline review comment object."""
    full = rec["repo"]
    return {
        "id": rec["id"],
        "node_id": node_id("PRRC", rec["id"]),
        "pull_request_review_id": rec.get("review_id"),
        "url": f"{ctx.base_url}/repos/{full}/pulls/comments/{rec['id']}",
        "html_url": f"{ctx.base_url}/{full}/pull/{rec['pull_number']}#discussion_r{rec['id']}",
        "pull_request_url": f"{ctx.base_url}/repos/{full}/pulls/{rec['pull_number']}",
        "path": rec["path"],
        "line": rec.get("line"),
        "side": rec.get("side", "RIGHT"),
        "position": rec.get("position") or rec.get("line") or 1,
        "commit_id": rec["commit_id"],
        "original_commit_id": rec["commit_id"],
        "body": rec["body"],
        "user": user(ctx, rec["user"]),
        "created_at": rec["created_at"],
        "updated_at": rec["updated_at"],
        "author_association": author_association(ctx, full, rec["user"]),
        "diff_hunk": rec.get("diff_hunk") or "@@ -1 +1 @@",
        "original_position": rec.get("position") or rec.get("line") or 1,
        "original_line": rec.get("line"),
        "start_line": None,
        "original_start_line": None,
        "start_side": None,
        "subject_type": "line",
        "reactions": reactions(ctx, f"{ctx.base_url}/repos/{full}/pulls/comments/{rec['id']}/reactions",
                               repo=full, comment_id=rec["id"]),
        "_links": {"self": {"href": f"{ctx.base_url}/repos/{full}/pulls/comments/{rec['id']}"},
                   "html": {"href": f"{ctx.base_url}/{full}/pull/{rec['pull_number']}#discussion_r{rec['id']}"},
                   "pull_request": {"href": f"{ctx.base_url}/repos/{full}/pulls/{rec['pull_number']}"}},
    }


def _app_of(ctx: Ctx, rec: Record) -> Record:
    if rec.get("app_slug") and rec["app_slug"] != ctx.app.slug:
        return {"id": rec.get("app_id", 1), "slug": rec["app_slug"], "name": rec["app_slug"],
                "node_id": node_id("A", rec.get("app_id", 1)), "owner": user(ctx, ctx.app.owner),
                "description": "", "external_url": ctx.base_url,
                "html_url": f"{ctx.base_url}/apps/{rec['app_slug']}", "created_at": "2024-01-01T00:00:00Z",
                "updated_at": "2024-01-01T00:00:00Z", "permissions": {"checks": "write", "metadata": "read"},
                "events": []}
    return app(ctx)


def check_suite(ctx: Ctx, rec: Record, *, pulls: list[Record]) -> Record:
    """A check suite object; ``pulls`` are the open pull requests it belongs to."""
    full = rec["repo"]
    runs = latest_runs([r for r in ctx.state.data["check_runs"].values() if r["check_suite_id"] == rec["id"]])
    status, conclusion = suite_status(runs)
    return {
        "id": rec["id"],
        "node_id": node_id("CS", rec["id"]),
        "head_branch": rec.get("head_branch"),
        "head_sha": rec["head_sha"],
        "status": status,
        "conclusion": conclusion,
        "url": f"{ctx.base_url}/repos/{full}/check-suites/{rec['id']}",
        "before": rec.get("before"),
        "after": rec["head_sha"],
        "app": _app_of(ctx, rec),
        "pull_requests": [pull_request_minimal(ctx, p) for p in pulls],
        "created_at": rec["created_at"],
        "updated_at": rec["updated_at"],
        "latest_check_runs_count": len(runs),
        "check_runs_url": f"{ctx.base_url}/repos/{full}/check-suites/{rec['id']}/check-runs",
        "rerequestable": True,
        "runs_rerequestable": True,
        "head_commit": rec.get("head_commit") or {
            "id": rec["head_sha"], "tree_id": rec["head_sha"], "message": "", "timestamp": rec["created_at"],
            "author": {"name": "", "email": ""}, "committer": {"name": "", "email": ""}},
        "repository": minimal_repository(ctx, ctx.state.repo(full)),
    }


def latest_runs(runs: list[Record]) -> list[Record]:
    """Each job's latest attempt (a re-run is a newer check run with the same name in the suite)."""
    latest: dict[str, Record] = {}
    for run in sorted(runs, key=lambda r: r["id"]):
        latest[run["name"]] = run
    return list(latest.values())


_FAILING = ("failure", "timed_out", "cancelled", "action_required", "startup_failure")


def suite_status(runs: list[Record]) -> tuple[str, str | None]:
    """A suite's status and conclusion from its check runs."""
    if not runs:
        return "queued", None
    if any(r["status"] != "completed" for r in runs):
        return "in_progress", None
    conclusions = [r.get("conclusion") for r in runs]
    for bad in _FAILING:
        if bad in conclusions:
            return "completed", bad
    if all(c in ("neutral", "skipped") for c in conclusions):
        return "completed", "neutral"
    return "completed", "success"


def check_run(ctx: Ctx, rec: Record, *, pulls: list[Record]) -> Record:
    """A check run object; ``pulls`` are the open pull requests whose head is its SHA."""
    full = rec["repo"]
    out = rec["output"]
    return {
        "id": rec["id"],
        "node_id": node_id("CR", rec["id"]),
        "head_sha": rec["head_sha"],
        "external_id": rec.get("external_id", ""),
        "url": f"{ctx.base_url}/repos/{full}/check-runs/{rec['id']}",
        "html_url": f"{ctx.base_url}/{full}/runs/{rec['id']}",
        "details_url": rec.get("details_url") or f"{ctx.base_url}/{full}/runs/{rec['id']}",
        "status": rec["status"],
        "conclusion": rec.get("conclusion"),
        "started_at": rec.get("started_at"),
        "completed_at": rec.get("completed_at"),
        "output": {
            "title": out.get("title"),
            "summary": out.get("summary"),
            "text": out.get("text"),
            "annotations_count": len(rec.get("annotations", [])),
            "annotations_url": f"{ctx.base_url}/repos/{full}/check-runs/{rec['id']}/annotations",
        },
        "name": rec["name"],
        "check_suite": {"id": rec["check_suite_id"]},
        "app": _app_of(ctx, rec),
        "pull_requests": [pull_request_minimal(ctx, p) for p in pulls],
    }


def installation(ctx: Ctx, rec: Record) -> Record:
    """An installation object."""
    account = user(ctx, rec["account"])
    return {
        "id": rec["id"],
        "account": account,
        "app_id": ctx.app.id,
        "app_slug": ctx.app.slug,
        "target_id": account["id"],
        "target_type": "User",
        "repository_selection": "all",
        "access_tokens_url": f"{ctx.base_url}/app/installations/{rec['id']}/access_tokens",
        "repositories_url": f"{ctx.base_url}/installation/repositories",
        "html_url": f"{ctx.base_url}/settings/installations/{rec['id']}",
        "permissions": app(ctx)["permissions"],
        "events": app(ctx)["events"],
        "created_at": rec["created_at"],
        "updated_at": rec["created_at"],
        "single_file_name": None,
        "has_multiple_single_files": False,
        "single_file_paths": [],
        "suspended_at": None,
        "suspended_by": None,
    }


def delivery(rec: Record) -> Record:
    """A hook delivery list item."""
    return {key: rec.get(key) for key in ("id", "guid", "delivered_at", "redelivery", "duration", "status",
                                          "status_code", "event", "action", "installation_id",
                                          "repository_id", "throttled_at")}


def event_envelope(ctx: Ctx, repo: Record, sender: str, action: str | None = None) -> Record:
    """The fields every webhook payload carries: action, repository, sender, installation."""
    payload: Record = {}
    if action is not None:
        payload["action"] = action
    payload["repository"] = repository(ctx, repo)
    payload["sender"] = user(ctx, sender)
    payload["installation"] = {"id": repo["installation_id"], "node_id": node_id("MDIn", repo["installation_id"])}
    return payload
