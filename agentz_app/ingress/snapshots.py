"""Keep issue, pull request and comment snapshots current from webhooks.

Handlers are idempotent and order-tolerant (see :mod:`agentz_app.store.snapshots`).
A change that matters to scheduling marks the repository dirty in the same
transaction, unless Agent-Z itself made it: the App's own labels, edits and comments
never cause re-judging.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gidgethub import routing, sansio
from sqlalchemy.orm import Session

from agentz_app.config import Settings
from agentz_app.domain.dependencies import parse_dependencies
from agentz_app.errors import AgentZError
from agentz_app.ingress.permissions import Actor, check_actor
from agentz_app.scheduling.signals import mark_dirty
from agentz_app.store import snapshots as store
from agentz_app.store.db import Database

router = routing.Router()

ISSUE_ACTIONS_THAT_MATTER = frozenset(
    {
        "opened",
        "edited",
        "labeled",
        "unlabeled",
        "assigned",
        "unassigned",
        "closed",
        "reopened",
        "deleted",
        "transferred",
    }
)
PULL_ACTIONS_THAT_MATTER = frozenset({"opened", "closed", "edited", "reopened"})
PULL_ACTIONS_THAT_LINK = frozenset({"opened", "edited", "reopened"})


class PayloadError(AgentZError):
    """A webhook payload lacks a field its event always carries."""


# Pure payload helpers ----------------------------------------------------------------


def section(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """``data[key]`` as an object, or PayloadError naming the missing key."""
    value = data.get(key)
    if not isinstance(value, Mapping):
        raise PayloadError(f"payload has no '{key}' object")
    return value


def repo_name(data: Mapping[str, Any]) -> str:
    """The ``owner/name`` of the payload's repository."""
    name = section(data, "repository").get("full_name")
    if not isinstance(name, str) or "/" not in name:
        raise PayloadError("payload repository has no full_name")
    return name


def installation_id(data: Mapping[str, Any]) -> int | None:
    """The installation the delivery came through, if any."""
    installation = data.get("installation")
    value = installation.get("id") if isinstance(installation, Mapping) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def app_bot_login(settings: Settings) -> str:
    """The login GitHub shows for the App's own actions."""
    return f"{settings.github_app_slug}[bot]"


def _app_id_of(obj: Any) -> Any:
    via = obj.get("performed_via_github_app") if isinstance(obj, Mapping) else None
    return via.get("id") if isinstance(via, Mapping) else None


def acted_by_app(data: Mapping[str, Any], settings: Settings) -> bool:
    """True when the App itself caused this event (its bot sent it, or it acted via the App)."""
    sender = data.get("sender")
    if isinstance(sender, Mapping) and sender.get("login") == app_bot_login(settings):
        return True
    return settings.github_app_id is not None and _app_id_of(data) == settings.github_app_id


def comment_from_app(comment: Mapping[str, Any], settings: Settings) -> bool:
    """True for comments the App wrote."""
    if settings.github_app_id is not None and _app_id_of(comment) == settings.github_app_id:
        return True
    user = comment.get("user")
    return isinstance(user, Mapping) and user.get("login") == app_bot_login(settings)


def mentions_dependency(repo: str, *texts: str | None) -> bool:
    """True when any text declares a dependency ("Blocked by #3", "depends on o/r#4" …)."""
    return bool(parse_dependencies([text for text in texts if text], repo))


def _previous_body(data: Mapping[str, Any]) -> str | None:
    changes = data.get("changes")
    body = changes.get("body") if isinstance(changes, Mapping) else None
    previous = body.get("from") if isinstance(body, Mapping) else None
    return previous if isinstance(previous, str) else None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _number(obj: Mapping[str, Any]) -> int:
    value = obj.get("number")
    if not isinstance(value, int) or isinstance(value, bool):
        raise PayloadError("payload object has no number")
    return value


def note_repository(session: Session, data: Mapping[str, Any]) -> str:
    """Upsert the payload's repository and return its full name."""
    name = repo_name(data)
    repository = section(data, "repository")
    if isinstance(repository.get("id"), int):
        store.upsert_repository(session, repository, installation_id=installation_id(data))
    return name


# Handlers ---------------------------------------------------------------------------


@router.register("issues")
async def on_issue(event: sansio.Event, gh: Any, *, db: Database, settings: Settings, **_: Any) -> None:
    """Upsert (or forget) the issue; mark the repository dirty for changes that matter."""
    data = event.data
    action = data.get("action")
    issue = section(data, "issue")
    number = _number(issue)
    with db.begin() as session:
        repo = note_repository(session, data)
        if action in ("deleted", "transferred"):
            changed = store.delete_issue(session, repo, number)
        else:
            changed = store.upsert_issue(session, repo, issue)
        if changed and action in ISSUE_ACTIONS_THAT_MATTER and not acted_by_app(data, settings):
            mark_dirty(session, repo, reason=f"issues.{action} #{number}")


@router.register("issue_comment")
async def on_issue_comment(event: sansio.Event, gh: Any, *, db: Database, settings: Settings, **_: Any) -> None:
    """Upsert the comment and its issue; dependency phrases mark the repository dirty."""
    data = event.data
    action = data.get("action")
    issue = section(data, "issue")
    comment = section(data, "comment")
    number = _number(issue)
    with db.begin() as session:
        repo = note_repository(session, data)
        store.upsert_issue(session, repo, issue)
        if action == "deleted":
            changed = store.delete_comment(session, int(comment["id"]))
        else:
            changed = store.upsert_comment(
                session, repo, number, comment, kind="issue", from_app=comment_from_app(comment, settings)
            )
        old_body = _previous_body(data)
        own = acted_by_app(data, settings) or comment_from_app(comment, settings)
        if changed and not own and mentions_dependency(repo, _text(comment.get("body")), old_body):
            mark_dirty(session, repo, reason=f"issue_comment.{action} #{number}")


@router.register("pull_request")
async def on_pull_request(event: sansio.Event, gh: Any, *, db: Database, settings: Settings, **_: Any) -> None:
    """Upsert the pull request; opening, closing and editing mark the repository dirty.

    When it links an issue, its author's permission is looked up for the reconciler.
    """
    data = event.data
    action = data.get("action")
    pull = section(data, "pull_request")
    number = _number(pull)
    with db.begin() as session:
        repo = note_repository(session, data)
        changed = store.upsert_pull(session, repo, pull)
        if changed and action in PULL_ACTIONS_THAT_MATTER and not acted_by_app(data, settings):
            mark_dirty(session, repo, reason=f"pull_request.{action} #{number}")
    if action in PULL_ACTIONS_THAT_LINK and gh is not None and store.linked_issues(_text(pull.get("body")), repo):
        # The reconciler adopts only pull requests whose author may steer; it never calls
        # GitHub, so the author's permission is resolved (and stored) here.
        await check_actor(gh, db, settings, repo, Actor.from_user(pull.get("user")))


@router.register("pull_request_review")
async def on_pull_request_review(event: sansio.Event, gh: Any, *, db: Database, settings: Settings, **_: Any) -> None:
    """Upsert the pull request, keep the review as feedback and remember its verdict."""
    data = event.data
    action = data.get("action")
    pull = section(data, "pull_request")
    review = section(data, "review")
    number = _number(pull)
    with db.begin() as session:
        repo = note_repository(session, data)
        store.upsert_pull(session, repo, pull)
        if isinstance(review.get("id"), int):
            store.upsert_comment(
                session, repo, number, review, kind="review", from_app=comment_from_app(review, settings)
            )
        if action == "dismissed":
            store.record_review_state(session, repo, number, "dismissed")
        elif isinstance(review.get("state"), str) and review["state"]:
            store.record_review_state(session, repo, number, review["state"])


@router.register("pull_request_review_comment")
async def on_pull_request_review_comment(
    event: sansio.Event, gh: Any, *, db: Database, settings: Settings, **_: Any
) -> None:
    """Upsert the pull request and the inline review comment."""
    data = event.data
    pull = section(data, "pull_request")
    comment = section(data, "comment")
    number = _number(pull)
    with db.begin() as session:
        repo = note_repository(session, data)
        store.upsert_pull(session, repo, pull)
        if data.get("action") == "deleted":
            store.delete_comment(session, int(comment["id"]))
        else:
            store.upsert_comment(
                session, repo, number, comment, kind="review_comment", from_app=comment_from_app(comment, settings)
            )
