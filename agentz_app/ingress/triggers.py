"""Webhook triggers: the ``TRIGGER_LABEL`` label and ``/agent-z`` comment commands.

Handlers take ``(event, gh, *, db, settings, queue, clock)``. Every path applies the
permission rule (:mod:`agentz_app.permissions`) to the person who acted: the
label's ``sender`` (not the issue author), the comment's author. Our own App's actions
and untrusted bots' comments are ignored without a reply, so Agent-Z never triggers
itself and never answers another bot. Who added a scheduling label (an eligible label
or the trigger label) is recorded for auto mode (``SCHEDULER_TRUST``).
What one label or command decides is written in one transaction; replies go to GitHub after
it commits.
"""

from __future__ import annotations

from gidgethub import routing, sansio
from gidgethub.abc import GitHubAPI

from agentz_app.commands import (
    CommandTarget,
    handle_comment_command,
    ignores_comment,
    issue_for_pull,
    known_issue,
    permission_facts,
    run_facts,
)
from agentz_app.config import Settings
from agentz_app.domain.commands import (
    Command,
    LabelDecision,
    answered_request,
    closed_to_labels,
    decide_trigger_label,
    edit_skip_reason,
    parse_command,
)
from agentz_app.github.events import BadPayload, IssueCommentEvent, IssuesEvent, WebhookEvent
from agentz_app.ingress.runs import PullFeedback, gather_conversation_fix
from agentz_app.logs import get_logger
from agentz_app.permissions import Actor, Clock, check_actor
from agentz_app.repo_config import settings_for
from agentz_app.store import trust
from agentz_app.store.db import Database
from agentz_app.store.models import Run, now
from agentz_app.store.runs import RunQueue

router = routing.Router()
log = get_logger(__name__)


def _sender_is_us(event: WebhookEvent, settings: Settings) -> bool:
    login = event.sender.login if event.sender is not None else ""
    return login.lower() == f"{settings.github_app_slug}[bot]".lower()


def scheduling_labels(settings: Settings) -> set[str]:
    """Labels whose adder vouches for an issue in auto mode: the eligible labels and the trigger label."""
    return {label.lower() for label in [*settings.scheduler_eligible_labels, settings.trigger_label]}


@router.register("issues", action="labeled")
async def issue_labeled(
    event: sansio.Event, gh: GitHubAPI | None, *, db: Database, settings: Settings, queue: RunQueue,
    clock: Clock = now, **_: object,
) -> None:
    """Record who added a scheduling label; enqueue the issue when someone who may steer adds the trigger label."""
    parsed = IssuesEvent.from_event(event)
    repo, issue = parsed.repo, parsed.issue
    settings = await db.run(settings_for, db, settings, repo)
    label = parsed.label.name if parsed.label is not None else ""
    if label.lower() not in scheduling_labels(settings) or _sender_is_us(parsed, settings):
        return
    number = issue.number
    actor = Actor.of(parsed.sender)
    sender = actor.login
    is_trigger = label.lower() == settings.trigger_label.lower()
    closed = closed_to_labels(issue_state=issue.state or "", is_pull_request=issue.is_pull_request)
    if closed is not None:
        if is_trigger:
            await db.run(queue.moves.add_event, None, "trigger_label", repo=repo, issue=number, user=sender,
                         accepted=False, reason=closed)
        return
    decision = await check_actor(gh, db, settings, repo, actor, clock=clock)
    updated_at = issue.updated_at or ""
    answers = is_trigger and decision.allowed
    answered = await db.run(queue.reads.requested_since, repo, number, updated_at) if answers else None
    verdict = decide_trigger_label(label=label, sender=sender, permission=permission_facts(decision),
                                   answered=run_facts(answered))
    run, created = await db.run(perform_label, queue, parsed, label, verdict, sender=sender,
                                trusted=decision.allowed, at=clock(), is_trigger=is_trigger)
    if not is_trigger:
        return
    if run is None:
        log.info("trigger label refused", repo=repo, issue=number, user=sender, reason=verdict.refusal)
    else:
        log.info("trigger label", repo=repo, issue=number, run_id=run.id, created=created)


def perform_label(queue: RunQueue, parsed: IssuesEvent, label: str, verdict: LabelDecision, *, sender: str,
                  trusted: bool, at: float, is_trigger: bool) -> tuple[Run | None, bool]:
    """Record who added a scheduling label and, for the trigger label, carry out ``verdict``, in one
    transaction; returns (the run enqueued or found, created)."""
    repo, number = parsed.repo, parsed.issue.number
    with queue.db.begin() as session:
        trust.record_label_in(session, repo, number, label, added_by=sender, trusted=trusted, at=at)
        if not is_trigger:
            return None, False
        if verdict.enqueue is None:
            queue.moves.add_event_in(session, verdict.run_id, "trigger_label", repo=repo, issue=number, user=sender,
                                     accepted=False, reason=verdict.refusal)
            return None, False
        run, created = queue.intake.enqueue_in(
            session, repo, number, installation_id=parsed.installation_id, title=parsed.issue.title or "",
            mode=verdict.enqueue.mode, requested_by=sender or None, reason=verdict.enqueue.reason,
            issue_updated_at=parsed.issue.updated_at or "", trigger_ref=verdict.enqueue.trigger_ref,
        )
        if not created:
            queue.moves.add_event_in(session, run.id, "trigger_label", repo=repo, issue=number, user=sender,
                                     accepted=False, reason=f"run already {run.status}")
        return run, created


@router.register("issues", action="unlabeled")
async def issue_unlabeled(event: sansio.Event, gh: GitHubAPI | None, *, db: Database, settings: Settings,
                          **_: object) -> None:
    """A scheduling label was removed: whoever added it no longer vouches for the issue."""
    parsed = IssuesEvent.from_event(event)
    label = parsed.label.name if parsed.label is not None else ""
    if label.lower() in scheduling_labels(settings):
        await db.run(trust.forget_label, db, parsed.repo, parsed.issue.number, label)


async def _pull_head_ref(gh: GitHubAPI | None, repo: str, number: int) -> str | None:
    if gh is None:
        return None
    pull = await gh.getitem(f"/repos/{repo}/pulls/{number}")
    head = pull.get("head") if isinstance(pull, dict) else None
    return str(head.get("ref")) if isinstance(head, dict) and head.get("ref") else None


def _edit_repeats_nothing(parsed: IssueCommentEvent, command: Command) -> str | None:
    """Why an edited comment's command must not run (None: it may)."""
    return edit_skip_reason(
        sender=parsed.sender.login if parsed.sender is not None else "",
        author=parsed.comment.user.login if parsed.comment.user is not None else "",
        previous_body=parsed.changes.previous_body if parsed.changes is not None else None,
        command=command,
    )


async def _gather_feedback(gh: GitHubAPI | None, db: Database, settings: Settings, run: Run, text: str,
                           author: Actor) -> PullFeedback:
    return await gather_conversation_fix(gh, db, settings, run, text=text, author=author)


def _comments_url(parsed: IssueCommentEvent) -> str:
    if not parsed.issue.comments_url:
        raise BadPayload("issue_comment", "issue.comments_url", "is missing")
    return parsed.issue.comments_url


@router.register("issue_comment", action="created")
@router.register("issue_comment", action="edited")
async def comment_command(
    event: sansio.Event, gh: GitHubAPI | None, *, db: Database, settings: Settings, queue: RunQueue,
    clock: Clock = now, **_: object,
) -> None:
    """Carry out an ``/agent-z`` command, new or added by an edit, from someone who may steer.

    A ``run`` or ``plan`` that a run already answered (its webhook came late or was
    processed twice) is dropped without a reply. On a pull request that is not
    Agent-Z's, only someone who may steer gets an explanation; others get nothing.
    """
    parsed = IssueCommentEvent.from_event(event)
    comment, issue, repo = parsed.comment, parsed.issue, parsed.repo
    if ignores_comment(comment, settings):
        return
    command = parse_command(comment.body or "")
    if command is None:
        return
    actor = Actor.of(comment.user)
    user = actor.login
    number = issue.number
    edited = parsed.action == "edited"
    if edited:
        skipped = _edit_repeats_nothing(parsed, command)
        if skipped is not None:
            await db.run(queue.moves.add_event, None, "command", command=command.name, user=user, repo=repo,
                         issue=number, accepted=False, reason=skipped)
            return
    title = issue.title or ""
    state = issue.state or "open"
    decision = None
    if issue.is_pull_request:
        mapped = await db.run(issue_for_pull, db, repo, number)
        if mapped is None:
            decision = await check_actor(gh, db, settings, repo, actor, clock=clock)
            if decision.allowed:
                head_ref = await _pull_head_ref(gh, repo, number) or ""
                mapped = await db.run(issue_for_pull, db, repo, number, head_ref=head_ref)
        if mapped is None:
            await _not_our_pull(gh, db, queue, parsed, command, actor, allowed=bool(decision and decision.allowed),
                                clock=clock)
            return
        number = mapped
        title, state = await db.run(known_issue, db, repo, number)
    requested_at = (comment.updated_at if edited else comment.created_at) or ""
    answers = command.name in ("run", "plan")
    answered = await db.run(queue.reads.requested_since, repo, number, requested_at) if answers else None
    dropped = answered_request(command, run_facts(answered))
    if answered is not None and dropped is not None:
        await db.run(queue.moves.add_event, answered.id, "command", command=command.name, user=user, repo=repo,
                     issue=number, accepted=False, reason=dropped)
        return
    target = CommandTarget(
        repo=repo,
        issue_number=number,
        title=title,
        installation_id=parsed.installation_id,
        comments_url=_comments_url(parsed),
        state=state,
        requested_at=max(requested_at, issue.updated_at or ""),
        comment_id=comment.id,
    )
    await handle_comment_command(gh, db, settings, queue, target=target, command=command, actor=actor,
                                 comment_id=comment.id, decision=decision, clock=clock,
                                 gather_feedback=_gather_feedback)


async def _not_our_pull(gh: GitHubAPI | None, db: Database, queue: RunQueue, parsed: IssueCommentEvent,
                        command: Command, actor: Actor, *, allowed: bool, clock: Clock) -> None:
    """A command on someone else's pull request: explain to a maintainer, once; stay silent to others."""
    reply = await db.run(_record_not_our_pull, queue, parsed, command, actor, may_reply=allowed and gh is not None,
                         at=clock())
    if reply and gh is not None:
        await gh.post(_comments_url(parsed), data={
            "body": f"@{actor.login} Agent-Z commands work on issues and on Agent-Z's own pull requests."
        })


def _record_not_our_pull(queue: RunQueue, parsed: IssueCommentEvent, command: Command, actor: Actor, *,
                         may_reply: bool, at: float) -> bool:
    """Claim the one explanation and append the command event, in one transaction; True: reply."""
    repo, number = parsed.repo, parsed.issue.number
    with queue.db.begin() as session:
        reply = may_reply and trust.claim_command_in(
            session, comment_id=parsed.comment.id, command_hash="not-our-pull", repo=repo, issue_number=number,
            login=actor.login, at=at,
        )
        queue.moves.add_event_in(session, None, "command", command=command.name, user=actor.login, repo=repo,
                                 issue=number, accepted=False, reason="pull request is not one of Agent-Z's",
                                 replied=reply)
    return reply
