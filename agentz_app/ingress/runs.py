"""Webhooks that wake submitted runs: CI results, PR reviews, PR closes, check-run actions.

A run in ``waiting_checks`` holds no lease. Results are matched by head SHA (fork
PRs carry no ``pull_requests``); once CI on the head is decided
(:func:`agentz_app.domain.ci.decide_ci`), the run is done or goes back to a worker with
the failures as feedback, and a done run goes back when CI on its head fails later.
"Re-run" on one of Agent-Z's own checks re-runs that stage, like the Retry button.
Reviews, their inline comments and check-run buttons steer a run only when their
author passes the permission rule (:mod:`agentz_app.ingress.permissions`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from gidgethub import routing, sansio
from sqlalchemy import select

from agentz_app.commands import ignores_commenter, mentions_app, parse_command
from agentz_app.config import Settings
from agentz_app.domain import states
from agentz_app.domain.states import Status
from agentz_app.errors import AgentZError, IllegalTransition, LeaseLost, NotFound
from agentz_app.ingress.checks import STATUS_CONCLUSIONS, record_event
from agentz_app.ingress.permissions import LOOKUP_FAILED, Actor, Clock, Decision, check_actor
from agentz_app.ingress.snapshots import section
from agentz_app.logs import get_logger
from agentz_app.reporting.checks import is_own_check
from agentz_app.store import trust
from agentz_app.store.db import Database
from agentz_app.store.models import Run, now
from agentz_app.store.runs import RunQueue
from agentz_app.store.trust import add_run_note
from workers.coordinator import Coordinator, status_view
from workers.pipeline import PipelineDeps, finish_run, request_fix, settle_ci
from workers.worktrees import Worktrees

router = routing.Router()
log = get_logger(__name__)

_EXTERNAL_PREFIX = "agent-z:"


def _repo(event: sansio.Event) -> str:
    repository = event.data.get("repository")
    name = repository.get("full_name") if isinstance(repository, Mapping) else None
    if not isinstance(name, str) or "/" not in name:
        raise AgentZError("webhook payload has no repository.full_name")
    return name


def _deps(gh: Any, db: Database, settings: Settings, queue: RunQueue) -> PipelineDeps:
    async def github(_: Run) -> Any:
        return gh

    return PipelineDeps(settings=settings, db=db, queue=queue, github=github, worktrees=Worktrees(settings))


@asynccontextmanager
async def _cleanup_deps(gh: Any, db: Database, settings: Settings) -> AsyncIterator[PipelineDeps]:
    """Dependencies for a terminal cleanup, built as the worker pool builds them.

    GitHub calls go through the handler's client; git (deleting the checkpoint ref) gets
    the installation token from the App, as a worker's pushes do.
    """
    from workers.pool import build_deps

    async with aiohttp.ClientSession() as http:
        yield build_deps(settings, db, http, client=gh)


def _own(event: sansio.Event, settings: Settings) -> bool:
    """True when the delivery's check run or suite is Agent-Z's own."""
    obj = event.data.get(event.event) if event.event in ("check_run", "check_suite") else None
    if not isinstance(obj, Mapping):
        return False
    app = obj.get("app")
    slug = app.get("slug") if isinstance(app, Mapping) else None
    if isinstance(slug, str) and slug:
        return slug == settings.github_app_slug
    return event.event == "check_run" and is_own_check(str(obj.get("name") or ""))


async def _wake(event: sansio.Event, gh: Any, *, db: Database, settings: Settings, queue: RunQueue) -> None:
    """Record the delivery's CI signals, then settle the runs waiting on (or done with) that head."""
    repo, records = record_event(db, settings, event)
    deps = _deps(gh, db, settings, queue)
    for head_sha in dict.fromkeys(record.head_sha for record in records):
        for run in queue.runs_waiting_on_sha(repo, head_sha):
            await settle_ci(deps, gh, run)


@router.register("check_run", action="completed")
async def on_check_run_completed(event: sansio.Event, gh: Any, *, db: Database, settings: Settings,
                                 queue: RunQueue, **_: Any) -> None:
    """A check run finished: settle runs waiting on its head SHA (our own checks are ignored)."""
    if not _own(event, settings):
        await _wake(event, gh, db=db, settings=settings, queue=queue)


@router.register("check_suite", action="completed")
async def on_check_suite_completed(event: sansio.Event, gh: Any, *, db: Database, settings: Settings,
                                   queue: RunQueue, **_: Any) -> None:
    """A check suite finished: settle runs waiting on its head SHA."""
    if not _own(event, settings):
        await _wake(event, gh, db=db, settings=settings, queue=queue)


@router.register("status")
async def on_status(event: sansio.Event, gh: Any, *, db: Database, settings: Settings, queue: RunQueue,
                    **_: Any) -> None:
    """A commit status changed: settle runs waiting on that SHA once it is final."""
    if str(event.data.get("state") or "") in STATUS_CONCLUSIONS:
        await _wake(event, gh, db=db, settings=settings, queue=queue)


async def _rerun_stage(gh: Any, db: Database, settings: Settings, queue: RunQueue, run: Run, sender: Actor,
                       *, what: str) -> None:
    """GitHub's "Re-run" on one of our checks: the Retry button's semantics, for people who may steer."""
    actor = sender.login or "github"
    decision = await check_actor(gh, db, settings, run.repo, sender)
    if not decision.allowed:
        queue.add_event(run.id, "check_run_action_refused", action="rerun", actor=actor, reason=decision.reason)
        log.info("re-run refused", run_id=run.id, user=actor, reason=decision.reason)
        return
    try:
        if run.status in states.RETRYABLE:
            queue.resume(run.id, reason=f"re-run requested on {what}", actor=actor)
        elif run.status == Status.WAITING_CHECKS:
            await settle_ci(_deps(gh, db, settings, queue), gh, run)
        else:
            queue.add_event(run.id, "retry_ignored", status=str(run.status), actor=actor)
    except (LeaseLost, IllegalTransition, AgentZError) as exc:
        log.info("re-run ignored", run_id=run.id, reason=str(exc))


@router.register("check_run", action="rerequested")
async def on_check_run_rerequested(event: sansio.Event, gh: Any, *, db: Database, settings: Settings,
                                   queue: RunQueue, **_: Any) -> None:
    """GitHub's "Re-run" on one of our check runs re-runs its stage; another App's re-run is only recorded."""
    if not _own(event, settings):
        return  # the checks router recorded the reset; the new attempt's webhooks settle the run
    check_run = section(event.data, "check_run")
    run_id = run_id_of_external(str(check_run.get("external_id") or ""))
    if run_id is None:
        return
    try:
        run = queue.get(run_id)
    except NotFound:
        return
    await _rerun_stage(gh, db, settings, queue, run, Actor.from_user(event.data.get("sender")),
                       what=str(check_run.get("name") or "a check run"))


@router.register("check_suite", action="rerequested")
async def on_check_suite_rerequested(event: sansio.Event, gh: Any, *, db: Database, settings: Settings,
                                     queue: RunQueue, **_: Any) -> None:
    """GitHub's "Re-run all checks" on our suite re-runs the runs whose head it is; another App's is only recorded."""
    if not _own(event, settings):
        return
    suite = section(event.data, "check_suite")
    head_sha = str(suite.get("head_sha") or "")
    sender = Actor.from_user(event.data.get("sender"))
    for run in queue.runs_waiting_on_sha(_repo(event), head_sha, statuses=list(Status)):
        await _rerun_stage(gh, db, settings, queue, run, sender, what="Agent-Z's checks")


def run_for_pull(db: Database, repo: str, number: int) -> Run | None:
    """The newest run that opened pull request ``number`` of ``repo``."""
    with db.read() as session:
        return session.scalars(
            select(Run).where(Run.repo == repo, Run.pr_number == number).order_by(Run.created_at.desc())
        ).first()


def _last_review_summary(queue: RunQueue, run_id: str) -> str | None:
    for event in reversed(queue.events(run_id)):
        review = event.payload.get("review") if event.kind == "review" else None
        if isinstance(review, Mapping) and isinstance(review.get("summary"), str):
            return str(review["summary"])
    return None


async def note_ignored_feedback(gh: Any, db: Database, settings: Settings, queue: RunQueue, run: Run, *,
                                actor: Actor, decision: Decision, kind: str) -> None:
    """Record feedback that was not used, and show it once per person on the run's status comment."""
    why = {LOOKUP_FAILED: "permission could not be verified"}.get(decision.reason, decision.reason)
    queue.add_event(run.id, "feedback_ignored", source=kind, user=actor.login, reason=decision.reason)
    log.info("feedback ignored", run_id=run.id, kind=kind, user=actor.login, reason=decision.reason)
    noted = add_run_note(db, run.id, f"Ignored feedback from @{actor.login} ({why}).")
    if noted is None or gh is None or noted.status not in (Status.WAITING_CHECKS, Status.DONE):
        return  # a working run shows the note at its next status update
    view = status_view(noted, review_summary=_last_review_summary(queue, run.id))
    try:
        await Coordinator(gh, db, settings).status_comment(noted, view)
    except AgentZError as exc:
        log.warning("status comment not updated", run_id=run.id, error=str(exc))


def _thread_of(comment: Mapping[str, Any]) -> Any:
    """The id of the thread an inline comment belongs to: the comment it replies to, else its own."""
    return comment.get("in_reply_to_id") or comment.get("id")


async def review_threads(gh: Any, db: Database, settings: Settings, repo: str, number: int, *,
                         review_id: Any = None, trusted: Actor | None = None,
                         ) -> tuple[list[dict[str, Any]], dict[Actor, Decision]]:
    """The pull request's inline review threads, each first comment then its replies (oldest first),
    keeping comments by people who may steer; and who was dropped (with why).

    With ``review_id`` only the threads that review touched are read. ``trusted`` is the
    person whose feedback this is (already checked).
    """
    listed = [c async for c in gh.getiter(f"/repos/{repo}/pulls/{number}/comments?per_page=100")]
    if review_id is not None:
        own = [c async for c in gh.getiter(f"/repos/{repo}/pulls/{number}/reviews/{review_id}/comments?per_page=100")]
        known = {c.get("id") for c in listed if c.get("id") is not None}
        listed += [c for c in own if c.get("id") is None or c.get("id") not in known]
        touched = {_thread_of(c) for c in own}
        listed = [c for c in listed if _thread_of(c) in touched]
    listed.sort(key=lambda c: (int(_thread_of(c) or 0), bool(c.get("in_reply_to_id")), int(c.get("id") or 0)))
    kept: list[dict[str, Any]] = []
    decisions: dict[str, Decision] = {}
    if trusted is not None:
        decisions[trusted.login.lower()] = Decision(True, "the person giving the feedback")
    dropped: dict[Actor, Decision] = {}
    for comment in listed:
        author = Actor.from_user(comment.get("user"))
        key = author.login.lower()
        if key not in decisions:
            decisions[key] = await check_actor(gh, db, settings, repo, author)
        if not decisions[key].allowed:
            dropped.setdefault(author, decisions[key])
            continue
        entry: dict[str, Any] = {
            "author": author.login,
            "author_association": comment.get("author_association"),
            "path": comment.get("path"),
            "line": comment.get("line") or comment.get("original_line"),
            "body": comment.get("body", ""),
        }
        if comment.get("in_reply_to_id"):
            entry["reply_to"] = comment["in_reply_to_id"]
        kept.append(entry)
    return kept, dropped


async def request_conversation_fix(gh: Any, db: Database, settings: Settings, queue: RunQueue, run: Run, *,
                                   text: str, author: Actor, association: str | None = None) -> Run:
    """Feedback from the PR conversation (``/agent-z fix`` or a mention of the App) by someone who
    may steer (checked by the caller): back to the developer with the text and every review thread,
    on the same branch and pull request."""
    if run.pr_number is None:
        raise IllegalTransition(run.id, run.status, Status.FIXING_CI)
    comments, dropped = await review_threads(gh, db, settings, run.repo, run.pr_number, trusted=author)
    for outsider, refusal in dropped.items():
        await note_ignored_feedback(gh, db, settings, queue, run, actor=outsider, decision=refusal,
                                    kind="review_comment")
    feedback = {
        "kind": "review",
        "review_body": text,
        "reviewer": author.login,
        "reviewer_association": association,
        "comments": comments,
        "source": "conversation",
    }
    return await request_fix(_deps(gh, db, settings, queue), gh, run, feedback,
                             reason=f"fix requested by @{author.login}")


@router.register("issue_comment", action="created")
async def on_pull_conversation_comment(event: sansio.Event, gh: Any, *, db: Database, settings: Settings,
                                       queue: RunQueue, clock: Clock = now, **_: Any) -> None:
    """A comment mentioning the App in an Agent-Z pull request's conversation, by someone who may
    steer, is feedback for the developer (``/agent-z`` commands go through the command path)."""
    data = event.data
    comment = data.get("comment") or {}
    issue = data.get("issue") or {}
    body = str(comment.get("body") or "")
    if not issue.get("pull_request") or ignores_commenter(comment, settings):
        return
    if parse_command(body) is not None or not mentions_app(body, settings.github_app_slug):
        return
    repo = _repo(event)
    run = run_for_pull(db, repo, int(issue.get("number") or 0))
    if run is None or run.status not in (Status.WAITING_CHECKS, Status.DONE):
        return
    author = Actor.from_user(comment.get("user"))
    decision = await check_actor(gh, db, settings, repo, author, clock=clock)
    if not decision.allowed:
        await note_ignored_feedback(gh, db, settings, queue, run, actor=author, decision=decision, kind="comment")
        return
    comment_id = comment.get("id")
    if isinstance(comment_id, int) and not trust.claim_command(
        db, comment_id=comment_id, command_hash="mention", repo=repo, issue_number=run.issue_number,
        login=author.login, at=clock(),
    ):
        return  # a redelivery: this comment was already used
    association = comment.get("author_association")
    try:
        await request_conversation_fix(gh, db, settings, queue, run, text=body, author=author,
                                       association=association if isinstance(association, str) else None)
    except (LeaseLost, IllegalTransition) as exc:
        log.info("comment feedback ignored", run_id=run.id, reason=str(exc))


@router.register("pull_request_review", action="submitted")
async def on_review_submitted(event: sansio.Event, gh: Any, *, db: Database, settings: Settings,
                              queue: RunQueue, **_: Any) -> None:
    """Changes requested on a run's PR by someone who may steer: back to a worker with the review.

    Reviews and inline comments by anyone else are not used: the run notes them instead.
    """
    review = event.data.get("review") or {}
    if str(review.get("state", "")).lower() != "changes_requested":
        return
    repo = _repo(event)
    number = int((event.data.get("pull_request") or {}).get("number") or 0)
    run = run_for_pull(db, repo, number)
    if run is None or run.status not in (Status.WAITING_CHECKS, Status.DONE):
        return
    reviewer = Actor.from_user(review.get("user"))
    decision = await check_actor(gh, db, settings, repo, reviewer)
    if not decision.allowed:
        await note_ignored_feedback(gh, db, settings, queue, run, actor=reviewer, decision=decision, kind="review")
        return
    comments: list[dict[str, Any]] = []
    if review.get("id"):
        comments, dropped = await review_threads(gh, db, settings, repo, number, review_id=review["id"],
                                                 trusted=reviewer)
        for author, refusal in dropped.items():
            await note_ignored_feedback(gh, db, settings, queue, run, actor=author, decision=refusal,
                                        kind="review_comment")
    feedback = {
        "kind": "review",
        "review_body": str(review.get("body") or ""),
        "reviewer": reviewer.login,
        "reviewer_association": review.get("author_association"),
        "comments": comments,
    }
    try:
        await request_fix(_deps(gh, db, settings, queue), gh, run, feedback, reason="changes requested")
    except (LeaseLost, IllegalTransition) as exc:
        log.info("review ignored", run_id=run.id, reason=str(exc))


@router.register("pull_request", action="closed")
async def on_pull_closed(event: sansio.Event, gh: Any, *, db: Database, settings: Settings,
                         queue: RunQueue, **_: Any) -> None:
    """A run's PR was merged (→ merged) or closed unmerged (→ cancelled); clean up either way."""
    pull = event.data.get("pull_request") or {}
    run = run_for_pull(db, _repo(event), int(pull.get("number") or 0))
    if run is None or run.status in (Status.MERGED, Status.CANCELLED):
        return
    merged = bool(pull.get("merged"))
    target = Status.MERGED if merged else Status.CANCELLED
    if not states.can_transition(run.status, target):
        return
    reason = "pull request merged" if merged else "pull request closed without merging"
    try:
        run = queue.set_status(run.id, target, reason=reason, actor="github", expected_attempt=run.attempt)
    except (LeaseLost, IllegalTransition) as exc:
        log.info("close ignored", run_id=run.id, reason=str(exc))
        return
    async with _cleanup_deps(gh, db, settings) as deps:
        await finish_run(deps, gh, run)


def run_id_of_external(external_id: str) -> str | None:
    """The run id in an ``agent-z:<run_id>:<stage>`` external id."""
    if not external_id.startswith(_EXTERNAL_PREFIX):
        return None
    parts = external_id.split(":")
    return parts[1] if len(parts) == 3 and parts[1] else None


@router.register("check_run", action="requested_action")
async def on_requested_action(event: sansio.Event, gh: Any, *, db: Database, settings: Settings,
                              queue: RunQueue, **_: Any) -> None:
    """The Retry and Stop buttons on Agent-Z's check runs, obeyed only from someone who may steer."""
    check_run = event.data.get("check_run") or {}
    identifier = str((event.data.get("requested_action") or {}).get("identifier") or "")
    run_id = run_id_of_external(str(check_run.get("external_id") or ""))
    if run_id is None or identifier not in ("retry", "stop"):
        return
    sender = Actor.from_user(event.data.get("sender"))
    actor = sender.login or "github"
    try:
        run = queue.get(run_id)
    except NotFound:
        return
    decision = await check_actor(gh, db, settings, run.repo, sender)
    if not decision.allowed:
        queue.add_event(run_id, "check_run_action_refused", action=identifier, actor=actor, reason=decision.reason)
        log.info("check run action refused", run_id=run_id, action=identifier, user=actor, reason=decision.reason)
        return
    try:
        if identifier == "stop":
            if run.status in states.TERMINAL and run.status != Status.DONE:
                return
            run = queue.cancel(run_id, reason=f"stopped from a check run by @{actor}", actor=actor)
            async with _cleanup_deps(gh, db, settings) as deps:
                await finish_run(deps, gh, run)
        elif run.status in states.RETRYABLE:
            queue.resume(run_id, reason="retry requested from a check run", actor=actor)
        elif run.status == Status.WAITING_CHECKS:
            await settle_ci(_deps(gh, db, settings, queue), gh, run)
        else:
            queue.add_event(run_id, "retry_ignored", status=str(run.status), actor=actor)
    except (LeaseLost, IllegalTransition, AgentZError) as exc:
        log.info("check run action ignored", run_id=run_id, action=identifier, reason=str(exc))
