"""Keep issue, pull request and comment snapshots current from webhooks.

Handlers are idempotent and order-tolerant (see :mod:`agentz_app.store.snapshots`).
A change that matters to scheduling marks the repository dirty in the same
transaction, unless Agent-Z itself made it: the App's own labels, edits and comments
never cause re-judging.
"""

from __future__ import annotations

from gidgethub import routing, sansio
from gidgethub.abc import GitHubAPI
from sqlalchemy.orm import Session

from agentz_app.config import Settings
from agentz_app.domain.dependencies import parse_dependencies
from agentz_app.github.events import (
    App,
    Comment,
    IssueCommentEvent,
    IssuesEvent,
    PullRequestEvent,
    PullRequestReviewCommentEvent,
    PullRequestReviewEvent,
    RepositoryEvent,
    User,
    WebhookEvent,
)
from agentz_app.permissions import Actor, check_actor
from agentz_app.store import snapshots as store
from agentz_app.store.db import Database
from agentz_app.store.scheduler_state import mark_dirty

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


# Pure payload helpers ----------------------------------------------------------------


def app_bot_login(settings: Settings) -> str:
    """The login GitHub shows for the App's own actions."""
    return f"{settings.github_app_slug}[bot]"


def acted_by_app(event: WebhookEvent, settings: Settings) -> bool:
    """True when the App's own bot sent this event."""
    return event.sender is not None and event.sender.login == app_bot_login(settings)


def written_by_app(author: User | None, via: App | None, settings: Settings) -> bool:
    """True for a comment or review the App wrote (through the App, or by its bot)."""
    if settings.github_app_id is not None and via is not None and via.id == settings.github_app_id:
        return True
    return author is not None and author.login == app_bot_login(settings)


def comment_from_app(comment: Comment, settings: Settings) -> bool:
    """True for comments the App wrote."""
    return written_by_app(comment.user, comment.performed_via_github_app, settings)


def mentions_dependency(repo: str, *texts: str | None) -> bool:
    """True when any text declares a dependency ("Blocked by #3", "depends on o/r#4" …)."""
    return bool(parse_dependencies([text for text in texts if text], repo))


def note_repository(session: Session, event: RepositoryEvent) -> str:
    """Upsert the event's repository and return its full name."""
    if event.repository.id is not None:
        store.upsert_repository(session, event.repository.model_dump(exclude_none=True),
                                installation_id=event.installation_id)
    return event.repo


# Handlers ---------------------------------------------------------------------------
# The store reads the payload's own objects (``event.data[...]``), which the parse has checked.


@router.register("issues")
async def on_issue(event: sansio.Event, gh: GitHubAPI | None, *, db: Database, settings: Settings,
                   **_: object) -> None:
    """Upsert (or forget) the issue; mark the repository dirty for changes that matter."""
    parsed = IssuesEvent.from_event(event)
    action, number = parsed.action, parsed.issue.number

    def record() -> None:
        with db.begin() as session:
            repo = note_repository(session, parsed)
            if action in ("deleted", "transferred"):
                changed = store.delete_issue(session, repo, number)
            else:
                changed = store.upsert_issue(session, repo, event.data["issue"])
            if changed and action in ISSUE_ACTIONS_THAT_MATTER and not acted_by_app(parsed, settings):
                mark_dirty(session, repo, reason=f"issues.{action} #{number}")

    await db.run(record)


@router.register("issue_comment")
async def on_issue_comment(event: sansio.Event, gh: GitHubAPI | None, *, db: Database, settings: Settings,
                           **_: object) -> None:
    """Upsert the comment and its issue; dependency phrases mark the repository dirty."""
    parsed = IssueCommentEvent.from_event(event)
    action, comment, number = parsed.action, parsed.comment, parsed.issue.number

    def record() -> None:
        with db.begin() as session:
            repo = note_repository(session, parsed)
            store.upsert_issue(session, repo, event.data["issue"])
            if action == "deleted":
                changed = store.delete_comment(session, comment.id)
            else:
                changed = store.upsert_comment(
                    session, repo, number, event.data["comment"], kind="issue",
                    from_app=comment_from_app(comment, settings),
                )
            old_body = parsed.changes.previous_body if parsed.changes is not None else None
            own = acted_by_app(parsed, settings) or comment_from_app(comment, settings)
            if changed and not own and mentions_dependency(repo, comment.body, old_body):
                mark_dirty(session, repo, reason=f"issue_comment.{action} #{number}")

    await db.run(record)


@router.register("pull_request")
async def on_pull_request(event: sansio.Event, gh: GitHubAPI | None, *, db: Database, settings: Settings,
                          **_: object) -> None:
    """Upsert the pull request; opening, closing and editing mark the repository dirty.

    When it links an issue, its author's permission is looked up for the reconciler.
    """
    parsed = PullRequestEvent.from_event(event)
    action, pull = parsed.action, parsed.pull_request

    def record() -> str:
        with db.begin() as session:
            repo = note_repository(session, parsed)
            changed = store.upsert_pull(session, repo, event.data["pull_request"])
            if changed and action in PULL_ACTIONS_THAT_MATTER and not acted_by_app(parsed, settings):
                mark_dirty(session, repo, reason=f"pull_request.{action} #{pull.number}")
            return repo

    repo = await db.run(record)
    if action in PULL_ACTIONS_THAT_LINK and gh is not None and store.linked_issues(pull.body, repo):
        # The reconciler adopts only pull requests whose author may steer; it never calls
        # GitHub, so the author's permission is resolved (and stored) here.
        await check_actor(gh, db, settings, repo, Actor.of(pull.user))


@router.register("pull_request_review")
async def on_pull_request_review(event: sansio.Event, gh: GitHubAPI | None, *, db: Database, settings: Settings,
                                 **_: object) -> None:
    """Upsert the pull request, keep the review as feedback and remember its verdict."""
    parsed = PullRequestReviewEvent.from_event(event)
    review, number = parsed.review, parsed.pull_request.number

    def record() -> None:
        with db.begin() as session:
            repo = note_repository(session, parsed)
            store.upsert_pull(session, repo, event.data["pull_request"])
            if review.id is not None:
                store.upsert_comment(
                    session, repo, number, event.data["review"], kind="review",
                    from_app=written_by_app(review.user, None, settings),
                )
            if parsed.action == "dismissed":
                store.record_review_state(session, repo, number, "dismissed")
            elif review.state:
                store.record_review_state(session, repo, number, review.state)

    await db.run(record)


@router.register("pull_request_review_comment")
async def on_pull_request_review_comment(
    event: sansio.Event, gh: GitHubAPI | None, *, db: Database, settings: Settings, **_: object
) -> None:
    """Upsert the pull request and the inline review comment."""
    parsed = PullRequestReviewCommentEvent.from_event(event)
    comment, number = parsed.comment, parsed.pull_request.number

    def record() -> None:
        with db.begin() as session:
            repo = note_repository(session, parsed)
            store.upsert_pull(session, repo, event.data["pull_request"])
            if parsed.action == "deleted":
                store.delete_comment(session, comment.id)
            else:
                store.upsert_comment(
                    session, repo, number, event.data["comment"], kind="review_comment",
                    from_app=written_by_app(comment.user, None, settings),
                )

    await db.run(record)
