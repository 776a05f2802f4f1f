"""Webhooks that wake submitted runs: CI results, PR reviews, PR closes, check-run actions.

Handlers only record facts and wake runs, in one transaction per delivery: the wake-up
(:mod:`agentz_app.store.wakeups`) says what happened, and a worker acts on it (settles
CI, finishes a run whose pull request closed, asks for a fix, re-runs a stage). A run
in ``waiting_checks`` holds no lease. CI results are recorded by the checks router
(:mod:`agentz_app.ingress.checks`), which wakes the runs waiting on (or done with) their
head SHA (fork PRs carry no ``pull_requests``). "Re-run" on one of Agent-Z's own checks
re-runs that stage, like the Retry button. Reviews, their inline comments and check-run
buttons steer a run only when their author passes the permission rule
(:mod:`agentz_app.permissions`); anyone else's wakes nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gidgethub import routing, sansio
from gidgethub.abc import GitHubAPI
from sqlalchemy import select
from sqlalchemy.orm import Session

from agentz_app.commands import ignores_comment, mentions_app
from agentz_app.config import Settings
from agentz_app.domain import states
from agentz_app.domain.commands import parse_command
from agentz_app.domain.states import Status
from agentz_app.errors import AgentZError, IllegalTransition, LeaseLost, NotFound
from agentz_app.github.events import (
    CheckRunEvent,
    CheckSuiteEvent,
    IssueCommentEvent,
    PullRequestEvent,
    PullRequestReviewEvent,
    ReviewComment,
    parse_payload,
)
from agentz_app.ingress.checks import own_check
from agentz_app.logs import get_logger
from agentz_app.permissions import LOOKUP_FAILED, Actor, Clock, Decision, check_actor
from agentz_app.store import trust
from agentz_app.store.db import Database
from agentz_app.store.models import Run, now
from agentz_app.store.runs import RunQueue, Transitions
from agentz_app.store.wakeups import record_wakeup

router = routing.Router()
log = get_logger(__name__)

_EXTERNAL_PREFIX = "agent-z:"
# Runs that take feedback from their pull request.
_TAKES_FEEDBACK = (Status.WAITING_CHECKS, Status.DONE)
MENTION = "mention"  # the command claim of a comment that mentions the App


# Reading payloads -------------------------------------------------------------------


def _client(gh: GitHubAPI | None) -> GitHubAPI:
    """The delivery's installation client; feedback cannot be read without one."""
    if gh is None:
        raise AgentZError("the delivery names no installation, so its pull request cannot be read")
    return gh


# Waking runs --------------------------------------------------------------------


def wake_run_in(session: Session, run_id: str, *, reason: str, key: str | None = None,
                payload: Mapping[str, Any] | None = None) -> None:
    """:func:`wake_run` inside the caller's transaction."""
    record_wakeup(session, run_id, reason=reason, key=key, payload=payload, at=now())


def wake_run(db: Database, run_id: str, *, reason: str, key: str | None = None,
             payload: Mapping[str, Any] | None = None) -> None:
    """Record one wake-up of ``run_id`` in its own transaction."""
    with db.begin() as session:
        wake_run_in(session, run_id, reason=reason, key=key, payload=payload)


# Re-runs ------------------------------------------------------------------------


async def _rerun_stages(gh: GitHubAPI | None, db: Database, settings: Settings, moves: Transitions, runs: list[Run],
                        sender: Actor, *, reason: str, action: str = "rerun") -> None:
    """GitHub's "Re-run" (or the Retry button) on our checks: for people who may steer, wake the
    runs for a worker to re-run their stage (the Retry button's semantics); refusals are recorded."""
    if not runs:
        return
    actor = sender.login or "github"
    decision = await check_actor(gh, db, settings, runs[0].repo, sender)
    if not decision.allowed:
        await db.run(_refuse_rerun, db, moves, [run.id for run in runs], action=action, actor=actor,
                     reason=decision.reason)
        return
    await db.run(_wake_for_rerun, db, [run.id for run in runs], actor=actor, reason=reason)


def _refuse_rerun(db: Database, moves: Transitions, run_ids: list[str], *, action: str, actor: str,
                  reason: str) -> None:
    with db.begin() as session:
        for run_id in run_ids:
            moves.add_event_in(session, run_id, "check_run_action_refused", action=action, actor=actor, reason=reason)
    for run_id in run_ids:
        log.info("re-run refused", run_id=run_id, user=actor, reason=reason)


def _wake_for_rerun(db: Database, run_ids: list[str], *, actor: str, reason: str) -> None:
    with db.begin() as session:
        at = now()
        for run_id in run_ids:
            record_wakeup(session, run_id, reason="rerun", payload={"actor": actor, "reason": reason}, at=at)


@router.register("check_run", action="rerequested")
async def on_check_run_rerequested(event: sansio.Event, gh: GitHubAPI | None, *, db: Database,
                                   settings: Settings, queue: RunQueue, **_: object) -> None:
    """GitHub's "Re-run" on one of our check runs re-runs its stage; another App's re-run is only recorded."""
    parsed = CheckRunEvent.from_event(event)
    if not own_check(parsed, settings):
        return  # the checks router recorded the reset; the new attempt's webhooks settle the run
    run_id = run_id_of_external(parsed.check_run.external_id or "")
    if run_id is None:
        return
    try:
        run = await db.run(queue.reads.get, run_id)
    except NotFound:
        return
    await _rerun_stages(gh, db, settings, queue.moves, [run], Actor.of(parsed.sender),
                        reason=f"re-run requested on {parsed.check_run.name or 'a check run'}")


@router.register("check_suite", action="rerequested")
async def on_check_suite_rerequested(event: sansio.Event, gh: GitHubAPI | None, *, db: Database,
                                     settings: Settings, queue: RunQueue, **_: object) -> None:
    """GitHub's "Re-run all checks" on our suite re-runs the runs whose head it is; another App's is only recorded."""
    parsed = CheckSuiteEvent.from_event(event)
    if not own_check(parsed, settings):
        return
    runs = await db.run(queue.reads.runs_waiting_on_sha, parsed.repo, parsed.check_suite.head_sha,
                        statuses=list(Status))
    await _rerun_stages(gh, db, settings, queue.moves, runs, Actor.of(parsed.sender),
                        reason="re-run requested on Agent-Z's checks")


# Pull request feedback ------------------------------------------------------------


def run_for_pull(db: Database, repo: str, number: int) -> Run | None:
    """The newest run that opened pull request ``number`` of ``repo``."""
    with db.read() as session:
        return session.scalars(
            select(Run).where(Run.repo == repo, Run.pr_number == number).order_by(Run.created_at.desc())
        ).first()


@dataclass(frozen=True)
class IgnoredFeedback:
    """Feedback not used: whose, the permission rule's answer about them, and its kind
    (``comment``, ``review`` or ``review_comment``)."""

    actor: Actor
    decision: Decision
    kind: str


@dataclass(frozen=True)
class PullFeedback:
    """Feedback for a run's pull request, read from GitHub and not yet recorded: the wake-up that
    sends it to the developer and the feedback dropped on the way."""

    run_id: str
    key: str  # the wake-up's key: the same feedback delivered twice wakes the run once
    payload: Mapping[str, Any]
    ignored: tuple[IgnoredFeedback, ...] = ()

    def record_in(self, session: Session, queue: RunQueue) -> None:
        """Note the dropped feedback and wake the run, inside the caller's transaction."""
        for item in self.ignored:
            note_ignored_feedback_in(session, queue.moves, self.run_id, item)
        wake_run_in(session, self.run_id, reason="feedback", key=self.key, payload=self.payload)


def note_ignored_feedback_in(session: Session, moves: Transitions, run_id: str, ignored: IgnoredFeedback) -> None:
    """Record feedback that was not used, and wake the run to show it once per person on its status
    comment, inside the caller's transaction."""
    actor, decision = ignored.actor, ignored.decision
    moves.add_event_in(session, run_id, "feedback_ignored", source=ignored.kind, user=actor.login,
                       reason=decision.reason)
    log.info("feedback ignored", run_id=run_id, kind=ignored.kind, user=actor.login, reason=decision.reason)
    why = {LOOKUP_FAILED: "permission could not be verified"}.get(decision.reason, decision.reason)
    noted = trust.add_run_note_in(session, run_id, f"Ignored feedback from @{actor.login} ({why}).")
    if noted is not None and noted.status in _TAKES_FEEDBACK:
        wake_run_in(session, run_id, reason="notes")  # a working run shows the note at its next status update


def note_ignored_feedback(db: Database, moves: Transitions, run: Run, *, actor: Actor, decision: Decision,
                          kind: str) -> None:
    """Record feedback that was not used, in one transaction (see :func:`note_ignored_feedback_in`)."""
    with db.begin() as session:
        note_ignored_feedback_in(session, moves, run.id, IgnoredFeedback(actor, decision, kind))


def record_feedback(db: Database, queue: RunQueue, feedback: PullFeedback) -> None:
    """Record gathered feedback (notes and the wake-up) in one transaction."""
    with db.begin() as session:
        feedback.record_in(session, queue)


async def _review_comments(gh: GitHubAPI, url: str) -> list[ReviewComment]:
    return [parse_payload(ReviewComment, "review comments", c) async for c in gh.getiter(url)]


async def review_threads(gh: GitHubAPI, db: Database, settings: Settings, repo: str, number: int, *,
                         review_id: int | None = None, trusted: Actor | None = None,
                         ) -> tuple[list[dict[str, Any]], dict[Actor, Decision]]:
    """The pull request's inline review threads, each first comment then its replies (oldest first),
    keeping comments by people who may steer; and who was dropped (with why).

    With ``review_id`` only the threads that review touched are read. ``trusted`` is the
    person whose feedback this is (already checked).
    """
    listed = await _review_comments(gh, f"/repos/{repo}/pulls/{number}/comments?per_page=100")
    if review_id is not None:
        own = await _review_comments(gh, f"/repos/{repo}/pulls/{number}/reviews/{review_id}/comments?per_page=100")
        known = {c.id for c in listed}
        listed += [c for c in own if c.id not in known]
        touched = {c.thread for c in own}
        listed = [c for c in listed if c.thread in touched]
    listed.sort(key=lambda c: (c.thread, c.in_reply_to_id is not None, c.id))
    kept: list[dict[str, Any]] = []
    decisions: dict[str, Decision] = {}
    if trusted is not None:
        decisions[trusted.login.lower()] = Decision(True, "the person giving the feedback")
    dropped: dict[Actor, Decision] = {}
    for comment in listed:
        author = Actor.of(comment.user)
        key = author.login.lower()
        if key not in decisions:
            decisions[key] = await check_actor(gh, db, settings, repo, author)
        if not decisions[key].allowed:
            dropped.setdefault(author, decisions[key])
            continue
        entry: dict[str, Any] = {
            "author": author.login,
            "author_association": comment.author_association,
            "path": comment.path,
            "line": comment.line or comment.original_line,
            "body": comment.body or "",
        }
        if comment.in_reply_to_id:
            entry["reply_to"] = comment.in_reply_to_id
        kept.append(entry)
    return kept, dropped


def _dropped_comments(dropped: Mapping[Actor, Decision]) -> tuple[IgnoredFeedback, ...]:
    return tuple(IgnoredFeedback(actor, decision, "review_comment") for actor, decision in dropped.items())


def _feedback_key(text: str, author: Actor) -> str:
    digest = hashlib.sha256(f"{author.login.lower()}\n{text}".encode()).hexdigest()[:24]
    return f"conversation:{digest}"


async def gather_conversation_fix(gh: GitHubAPI | None, db: Database, settings: Settings, run: Run, *, text: str,
                                  author: Actor, association: str | None = None) -> PullFeedback:
    """Feedback from the PR conversation (``/agent-z fix`` or a mention of the App) by someone who
    may steer (checked by the caller), read from GitHub and not yet recorded: the wake-up for a
    worker to send it back to the developer with the text and every review thread, on the same
    branch and pull request, and the outsiders' review comments it leaves out."""
    if run.pr_number is None or run.status not in _TAKES_FEEDBACK:
        raise IllegalTransition(run.id, run.status, Status.FIXING_CI)
    comments, dropped = await review_threads(_client(gh), db, settings, run.repo, run.pr_number, trusted=author)
    feedback = {
        "kind": "review",
        "review_body": text,
        "reviewer": author.login,
        "reviewer_association": association,
        "comments": comments,
        "source": "conversation",
    }
    return PullFeedback(run.id, _feedback_key(text, author),
                        {"feedback": feedback, "reason": f"fix requested by @{author.login}"},
                        _dropped_comments(dropped))


def _record_mention(db: Database, queue: RunQueue, feedback: PullFeedback, *, comment_id: int, repo: str,
                    issue_number: int, login: str, at: float) -> bool:
    """Claim the comment and record its feedback, in one transaction; False when it was already used."""
    with db.begin() as session:
        if not trust.claim_command_in(session, comment_id=comment_id, command_hash=MENTION, repo=repo,
                                      issue_number=issue_number, login=login, at=at):
            return False
        feedback.record_in(session, queue)
    return True


@router.register("issue_comment", action="created")
async def on_pull_conversation_comment(event: sansio.Event, gh: GitHubAPI | None, *, db: Database,
                                       settings: Settings, queue: RunQueue, clock: Clock = now,
                                       **_: object) -> None:
    """A comment mentioning the App in an Agent-Z pull request's conversation, by someone who may
    steer, is feedback for the developer (``/agent-z`` commands go through the command path).

    What it needs from GitHub is read first; the comment's claim, the notes and the wake-up
    then commit in one transaction.
    """
    parsed = IssueCommentEvent.from_event(event)
    comment = parsed.comment
    body = comment.body or ""
    if not parsed.issue.is_pull_request or ignores_comment(comment, settings):
        return
    if parse_command(body) is not None or not mentions_app(body, settings.github_app_slug):
        return
    repo = parsed.repo
    run = await db.run(run_for_pull, db, repo, parsed.issue.number)
    if run is None or run.status not in _TAKES_FEEDBACK:
        return
    author = Actor.of(comment.user)
    decision = await check_actor(gh, db, settings, repo, author, clock=clock)
    if not decision.allowed:
        await db.run(note_ignored_feedback, db, queue.moves, run, actor=author, decision=decision, kind="comment")
        return
    if await db.run(trust.command_claimed, db, comment_id=comment.id, command_hash=MENTION):
        return  # a redelivery: this comment was already used
    try:
        feedback = await gather_conversation_fix(gh, db, settings, run, text=body, author=author,
                                                 association=comment.author_association)
    except (LeaseLost, IllegalTransition) as exc:
        log.info("comment feedback ignored", run_id=run.id, reason=str(exc))
        return
    await db.run(_record_mention, db, queue, feedback, comment_id=comment.id, repo=repo,
                 issue_number=run.issue_number, login=author.login, at=clock())


@router.register("pull_request_review", action="submitted")
async def on_review_submitted(event: sansio.Event, gh: GitHubAPI | None, *, db: Database, settings: Settings,
                              queue: RunQueue, **_: object) -> None:
    """Changes requested on a run's PR by someone who may steer: wake the run for a worker to send it
    back with the review. Reviews and inline comments by anyone else are not used: the run notes them.

    The review threads are read from GitHub first; the notes and the wake-up then commit in one
    transaction.
    """
    parsed = PullRequestReviewEvent.from_event(event)
    review = parsed.review
    if (review.state or "").lower() != "changes_requested":
        return
    repo, number = parsed.repo, parsed.pull_request.number
    run = await db.run(run_for_pull, db, repo, number)
    if run is None or run.status not in _TAKES_FEEDBACK:
        return
    reviewer = Actor.of(review.user)
    decision = await check_actor(gh, db, settings, repo, reviewer)
    if not decision.allowed:
        await db.run(note_ignored_feedback, db, queue.moves, run, actor=reviewer, decision=decision, kind="review")
        return
    comments: list[dict[str, Any]] = []
    dropped: dict[Actor, Decision] = {}
    if review.id:
        comments, dropped = await review_threads(_client(gh), db, settings, repo, number, review_id=review.id,
                                                 trusted=reviewer)
    feedback = {
        "kind": "review",
        "review_body": review.body or "",
        "reviewer": reviewer.login,
        "reviewer_association": review.author_association,
        "comments": comments,
    }
    await db.run(record_feedback, db, queue, PullFeedback(
        run.id, f"review:{review.id or 'unknown'}", {"feedback": feedback, "reason": "changes requested"},
        _dropped_comments(dropped),
    ))


# Pull request closed, check-run buttons ---------------------------------------------


@router.register("pull_request", action="closed")
async def on_pull_closed(event: sansio.Event, gh: GitHubAPI | None, *, db: Database, settings: Settings,
                         **_: object) -> None:
    """A run's PR was merged or closed unmerged: wake the run for a worker to end it (merged or
    cancelled) and clean up."""
    parsed = PullRequestEvent.from_event(event)
    run = await db.run(run_for_pull, db, parsed.repo, parsed.pull_request.number)
    if run is None or run.status in (Status.MERGED, Status.CANCELLED):
        return
    merged = bool(parsed.pull_request.merged)
    if states.can_transition(run.status, Status.MERGED if merged else Status.CANCELLED):
        await db.run(wake_run, db, run.id, reason="pull_closed", payload={"merged": merged})


def run_id_of_external(external_id: str) -> str | None:
    """The run id in an ``agent-z:<run_id>:<stage>`` external id."""
    if not external_id.startswith(_EXTERNAL_PREFIX):
        return None
    parts = external_id.split(":")
    return parts[1] if len(parts) == 3 and parts[1] else None


@router.register("check_run", action="requested_action")
async def on_requested_action(event: sansio.Event, gh: GitHubAPI | None, *, db: Database, settings: Settings,
                              queue: RunQueue, **_: object) -> None:
    """The Retry and Stop buttons on Agent-Z's check runs, obeyed only from someone who may steer.

    Stop cancels the run at once (its holder loses the lease) and wakes it for a worker to clean
    up; Retry wakes it for a worker to re-run its stage.
    """
    parsed = CheckRunEvent.from_event(event)
    identifier = parsed.requested_action.identifier if parsed.requested_action is not None else ""
    run_id = run_id_of_external(parsed.check_run.external_id or "")
    if run_id is None or identifier not in ("retry", "stop"):
        return
    try:
        run = await db.run(queue.reads.get, run_id)
    except NotFound:
        return
    if identifier == "retry":
        await _rerun_stages(gh, db, settings, queue.moves, [run], Actor.of(parsed.sender),
                            reason="retry requested from a check run", action="retry")
        return
    sender = Actor.of(parsed.sender)
    actor = sender.login or "github"
    decision = await check_actor(gh, db, settings, run.repo, sender)
    if not decision.allowed:
        await db.run(queue.moves.add_event, run_id, "check_run_action_refused", action=identifier, actor=actor,
                     reason=decision.reason)
        log.info("check run action refused", run_id=run_id, action=identifier, user=actor, reason=decision.reason)
        return
    if run.status in states.TERMINAL and run.status not in (Status.DONE, Status.CANCELLED):
        return
    if run.status != Status.CANCELLED:
        try:
            await db.run(queue.moves.cancel, run_id, reason=f"stopped from a check run by @{actor}", actor=actor)
        except (LeaseLost, IllegalTransition) as exc:
            log.info("check run action ignored", run_id=run_id, action=identifier, reason=str(exc))
            return
    await db.run(wake_run, db, run_id, reason="finish")  # again on a redelivery: the cleanup may not have happened
