"""What a GitHub App needs to call each REST operation and to receive each webhook event.

GitHub answers 403 "Resource not accessible by integration" when an installation token
calls an API its App was not granted, delivers an event only to an App subscribed to it
*and* holding the permission it needs, and refuses an App manifest subscribing to events
its permissions do not cover. Fakehub applies these tables the same way; the contract
tests check them against GitHub's published description.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

LEVELS = {"none": 0, "read": 1, "write": 2, "admin": 3}

Grant = tuple[str, str]
"""``(permission, level)``: the manifest key (``checks``) and ``read`` or ``write``."""

APP_ONLY: Grant = ("app", "jwt")
"""An operation made with the App's JWT, not an installation token: no repository permission."""
NO_PERMISSION: Grant = ("none", "none")
"""Any installation may call it (``GET /rate_limit``, ``GET /installation/repositories``)."""

# "METHOD /template" (GitHub's templates) -> the grants that allow it (any one suffices).
OPERATION_GRANTS: dict[str, tuple[Grant, ...]] = {
    "GET /app": (APP_ONLY,),
    "GET /app/installations": (APP_ONLY,),
    "POST /app/installations/{installation_id}/access_tokens": (APP_ONLY,),
    "GET /repos/{owner}/{repo}/installation": (APP_ONLY,),
    "GET /app/hook/deliveries": (APP_ONLY,),
    "GET /app/hook/deliveries/{delivery_id}": (APP_ONLY,),
    "POST /app/hook/deliveries/{delivery_id}/attempts": (APP_ONLY,),
    "POST /app-manifests/{code}/conversions": (NO_PERMISSION,),
    "GET /rate_limit": (NO_PERMISSION,),
    "GET /installation/repositories": (NO_PERMISSION,),
    "GET /repos/{owner}/{repo}": (("metadata", "read"),),
    "GET /repos/{owner}/{repo}/collaborators/{username}/permission": (("metadata", "read"),),
    # Issues endpoints also serve pull requests: either permission opens them.
    "GET /repos/{owner}/{repo}/issues": (("issues", "read"), ("pull_requests", "read")),
    "POST /repos/{owner}/{repo}/issues": (("issues", "write"),),
    "GET /repos/{owner}/{repo}/issues/{issue_number}": (("issues", "read"), ("pull_requests", "read")),
    "PATCH /repos/{owner}/{repo}/issues/{issue_number}": (("issues", "write"), ("pull_requests", "write")),
    "GET /repos/{owner}/{repo}/issues/{issue_number}/comments": (("issues", "read"), ("pull_requests", "read")),
    "POST /repos/{owner}/{repo}/issues/{issue_number}/comments": (("issues", "write"), ("pull_requests", "write")),
    "GET /repos/{owner}/{repo}/issues/comments/{comment_id}": (("issues", "read"), ("pull_requests", "read")),
    "PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}": (("issues", "write"), ("pull_requests", "write")),
    "DELETE /repos/{owner}/{repo}/issues/comments/{comment_id}": (("issues", "write"), ("pull_requests", "write")),
    "GET /repos/{owner}/{repo}/issues/comments/{comment_id}/reactions": (("issues", "read"),
                                                                         ("pull_requests", "read")),
    "GET /repos/{owner}/{repo}/issues/{issue_number}/reactions": (("issues", "read"), ("pull_requests", "read")),
    "POST /repos/{owner}/{repo}/issues/comments/{comment_id}/reactions": (("issues", "write"),
                                                                          ("pull_requests", "write")),
    "POST /repos/{owner}/{repo}/issues/{issue_number}/reactions": (("issues", "write"), ("pull_requests", "write")),
    "POST /repos/{owner}/{repo}/issues/{issue_number}/labels": (("issues", "write"), ("pull_requests", "write")),
    "PUT /repos/{owner}/{repo}/issues/{issue_number}/labels": (("issues", "write"), ("pull_requests", "write")),
    "DELETE /repos/{owner}/{repo}/issues/{issue_number}/labels": (("issues", "write"), ("pull_requests", "write")),
    "DELETE /repos/{owner}/{repo}/issues/{issue_number}/labels/{name}": (("issues", "write"),
                                                                         ("pull_requests", "write")),
    "POST /repos/{owner}/{repo}/issues/{issue_number}/assignees": (("issues", "write"), ("pull_requests", "write")),
    "DELETE /repos/{owner}/{repo}/issues/{issue_number}/assignees": (("issues", "write"),
                                                                     ("pull_requests", "write")),
    "GET /repos/{owner}/{repo}/pulls": (("pull_requests", "read"),),
    "POST /repos/{owner}/{repo}/pulls": (("pull_requests", "write"),),
    "GET /repos/{owner}/{repo}/pulls/{pull_number}": (("pull_requests", "read"),),
    "PATCH /repos/{owner}/{repo}/pulls/{pull_number}": (("pull_requests", "write"),),
    "PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge": (("contents", "write"),),
    "GET /repos/{owner}/{repo}/pulls/{pull_number}/files": (("pull_requests", "read"),),
    "GET /repos/{owner}/{repo}/pulls/{pull_number}/reviews": (("pull_requests", "read"),),
    "POST /repos/{owner}/{repo}/pulls/{pull_number}/reviews": (("pull_requests", "write"),),
    "GET /repos/{owner}/{repo}/pulls/{pull_number}/reviews/{review_id}/comments": (("pull_requests", "read"),),
    "GET /repos/{owner}/{repo}/pulls/{pull_number}/comments": (("pull_requests", "read"),),
    "POST /repos/{owner}/{repo}/pulls/{pull_number}/requested_reviewers": (("pull_requests", "write"),),
    "POST /repos/{owner}/{repo}/check-runs": (("checks", "write"),),
    "GET /repos/{owner}/{repo}/check-runs/{check_run_id}": (("checks", "read"),),
    "PATCH /repos/{owner}/{repo}/check-runs/{check_run_id}": (("checks", "write"),),
    "GET /repos/{owner}/{repo}/check-runs/{check_run_id}/annotations": (("checks", "read"),),
    "POST /repos/{owner}/{repo}/check-runs/{check_run_id}/rerequest": (("checks", "write"),),
    "GET /repos/{owner}/{repo}/check-suites/{check_suite_id}": (("checks", "read"),),
    "GET /repos/{owner}/{repo}/check-suites/{check_suite_id}/check-runs": (("checks", "read"),),
    "POST /repos/{owner}/{repo}/check-suites/{check_suite_id}/rerequest": (("checks", "write"),),
    "GET /repos/{owner}/{repo}/commits/{ref}/check-runs": (("checks", "read"),),
    "GET /repos/{owner}/{repo}/commits/{ref}/check-suites": (("checks", "read"),),
    "GET /repos/{owner}/{repo}/commits/{ref}/status": (("statuses", "read"),),
    "GET /repos/{owner}/{repo}/commits/{ref}/statuses": (("statuses", "read"),),
    "POST /repos/{owner}/{repo}/statuses/{sha}": (("statuses", "write"),),
    "GET /repos/{owner}/{repo}/actions/jobs/{job_id}": (("actions", "read"),),
    "GET /repos/{owner}/{repo}/actions/jobs/{job_id}/logs": (("actions", "read"),),
    "GET /repos/{owner}/{repo}/actions/runs/{run_id}": (("actions", "read"),),
    "GET /repos/{owner}/{repo}/actions/runs/{run_id}/jobs": (("actions", "read"),),
    "POST /repos/{owner}/{repo}/actions/runs/{run_id}/rerun-failed-jobs": (("actions", "write"),),
    "POST /repos/{owner}/{repo}/actions/jobs/{job_id}/rerun": (("actions", "write"),),
}

# Webhook event -> the permission GitHub requires to deliver it (None: every App gets it).
EVENT_GRANTS: dict[str, Grant | None] = {
    "installation": None,
    "installation_repositories": None,
    "check_run": ("checks", "read"),
    "check_suite": ("checks", "read"),
    "status": ("statuses", "read"),
    "issues": ("issues", "read"),
    "issue_comment": ("issues", "read"),
    "pull_request": ("pull_requests", "read"),
    "pull_request_review": ("pull_requests", "read"),
    "pull_request_review_comment": ("pull_requests", "read"),
    "push": ("contents", "read"),
    "workflow_job": ("actions", "read"),
    "workflow_run": ("actions", "read"),
}

# Events an App holding checks:write receives without subscribing (for its own check runs and suites).
AUTOMATIC_EVENTS: dict[str, Grant] = {"check_run": ("checks", "write"), "check_suite": ("checks", "write")}

ALL_PERMISSIONS: dict[str, str] = {"actions": "write", "checks": "write", "contents": "write", "issues": "write",
                                   "metadata": "read", "pull_requests": "write", "statuses": "write"}
"""An App granted everything fakehub serves (the default when no manifest is given)."""


def normalise(template: str) -> str:
    """A route template with every ``{placeholder}`` emptied, so fakehub's and GitHub's names compare."""
    return re.sub(r"\{[^}]*\}", "{}", template)


def holds(permissions: Mapping[str, str], grant: Grant) -> bool:
    """Whether ``permissions`` include ``grant`` (metadata:read is implied for every App)."""
    name, level = grant
    if grant in (NO_PERMISSION, APP_ONLY):
        return True
    have = "read" if name == "metadata" and permissions.get(name) is None else permissions.get(name, "none")
    return LEVELS.get(have, 0) >= LEVELS[level]


def allowed(permissions: Mapping[str, str], grants: tuple[Grant, ...]) -> bool:
    """Whether any of ``grants`` is held."""
    return any(holds(permissions, grant) for grant in grants)


def receives(permissions: Mapping[str, str], events: list[str], event: str) -> bool:
    """Whether an App with these permissions and subscriptions is sent ``event``."""
    if event not in EVENT_GRANTS:
        return event in events
    needed = EVENT_GRANTS[event]
    if needed is None:
        return True
    automatic = AUTOMATIC_EVENTS.get(event)
    subscribed = event in events or (automatic is not None and holds(permissions, automatic))
    return subscribed and holds(permissions, needed)


def unsupported_events(permissions: Mapping[str, str], events: list[str]) -> list[str]:
    """Subscribed events the permissions do not cover (GitHub refuses such a manifest)."""
    return [e for e in events if (g := EVENT_GRANTS.get(e)) is not None and not holds(permissions, g)]


def grants_by_route() -> dict[str, tuple[Grant, ...]]:
    """:data:`OPERATION_GRANTS` keyed by ``METHOD normalised-template``."""
    out = {}
    for key, value in OPERATION_GRANTS.items():
        method, template = key.split(" ", 1)
        out[f"{method} {normalise(template)}"] = value
    return out
