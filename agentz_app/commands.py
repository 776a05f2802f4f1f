"""Slash commands in issue and pull-request comments, with the permission rule.

``/agent-z run|cancel|retry|status|plan|fix`` is recognised on the first line or on any
line that starts with it (case-insensitive); fenced code, inline code and quoted
lines are ignored. Only people who pass the permission rule
(:mod:`agentz_app.permissions`: write, maintain or admin, or a bot listed in
``TRUSTED_BOTS``) may command. Anyone else gets at most one polite reply per issue per
hour (:data:`REFUSAL_REPLY_SECONDS`, remembered in ``refusal_replies``) and nothing runs.

A command is handled once per comment and command line (``command_executions``): a
redelivery, or an edit that keeps the command, repeats nothing; an edit that adds a
new command runs it once.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from gidgethub.abc import GitHubAPI
from sqlalchemy import select
from sqlalchemy.orm import Session

from agentz_app.config import Settings
from agentz_app.domain.commands import (
    Approve,
    Cancel,
    Command,
    CommandDecision,
    CommandFacts,
    Effect,
    Enqueue,
    PermissionFacts,
    Retry,
    RunFacts,
    SendFeedback,
    already_working,
    command_key,
    decide_command,
)
from agentz_app.domain.markdown import prose_lines
from agentz_app.domain.states import Status
from agentz_app.errors import AgentZError
from agentz_app.github.events import Comment
from agentz_app.logs import get_logger
from agentz_app.permissions import (
    Actor,
    Clock,
    Decision,
    Permission,
    TrustPolicy,
    check_actor,
)
from agentz_app.reporting.comments import MAX_COMMENT
from agentz_app.reporting.text import truncate_bytes
from agentz_app.secrets import configured_secret_values, redact_text
from agentz_app.store import trust
from agentz_app.store.db import Database
from agentz_app.store.models import IssueSnapshot, PullSnapshot, Run, now
from agentz_app.store.runs import RunQueue, RunReads, Transitions

log = get_logger(__name__)

REFUSAL_REPLY_SECONDS = 3600.0
OWN_BRANCH = re.compile(r"^agent-z/issue-(\d+)(?:-|$)")


def mentions_app(body: str, slug: str) -> bool:
    """True when the prose of ``body`` mentions the App (``@slug`` or ``@slug[bot]``); code and quotes do not count."""
    if not slug or f"@{slug.lower()}" not in (body or "").lower():
        return False
    mention = re.compile(rf"(?<![\w@/-])@{re.escape(slug)}(?:\[bot\])?(?![\w-])", re.IGNORECASE)
    return any(mention.search(line) for line in prose_lines(body))


def ignores_comment(comment: Comment, settings: Settings) -> bool:
    """True for comments that never command and get no reply: our App's own (no loops), and
    any bot not listed in ``TRUSTED_BOTS``."""
    app = comment.performed_via_github_app
    if settings.github_app_id is not None and app is not None and app.id == settings.github_app_id:
        return True
    actor = Actor.of(comment.user)
    policy = TrustPolicy.from_settings(settings)
    return policy.is_own(actor) or (actor.bot and actor.login.lower() not in policy.trusted_bots)


def can_write(answer: dict[str, Any]) -> bool:
    """True when a collaborator-permission answer grants write, maintain or admin."""
    return Permission.from_answer(answer).grants_write


@dataclass(frozen=True)
class CommandTarget:
    """Where a command applies: the issue it is about and where to reply."""

    repo: str
    issue_number: int
    title: str
    installation_id: int | None
    comments_url: str
    state: str = "open"
    requested_at: str = ""  # GitHub's time of the comment, kept with a run it enqueues
    comment_id: int | None = None  # the command's comment, acknowledged with a reaction on GitHub

    @property
    def trigger_ref(self) -> str | None:
        """What GitHub acknowledges for a command that changes a run (see ``runs.trigger_ref``)."""
        return f"comment:{self.comment_id}" if self.comment_id is not None else None


@dataclass(frozen=True)
class CommandOutcome:
    accepted: bool
    message: str
    run_id: str | None = None
    replied: bool = False  # the outcome is to be posted as a reply (set when the command is recorded)


@dataclass(frozen=True)
class CommandRecord:
    """How a comment's command is recorded with its effects: the ``command`` event and the comment's claim."""

    command: Command
    permission: str  # the permission rule's reason
    at: float
    comment_id: int | None = None


def latest_run(db: Database, repo: str, issue_number: int) -> Run | None:
    """The newest run for an issue, live or not."""
    with db.read() as session:
        return session.scalars(
            select(Run)
            .where(Run.repo == repo, Run.issue_number == issue_number)
            .order_by(Run.created_at.desc())
            .limit(1)
        ).first()


def issue_for_pull(db: Database, repo: str, pr_number: int, head_ref: str | None = None) -> int | None:
    """The issue an Agent-Z pull request works on, from our runs or our branch name."""
    with db.read() as session:
        number = session.scalar(
            select(Run.issue_number)
            .where(Run.repo == repo, Run.pr_number == pr_number)
            .order_by(Run.created_at.desc())
            .limit(1)
        )
        if number is not None:
            return int(number)
        if head_ref is None:
            head_ref = session.scalar(
                select(PullSnapshot.head_ref).where(PullSnapshot.repo == repo, PullSnapshot.number == pr_number)
            )
    match = OWN_BRANCH.match(head_ref or "")
    return int(match.group(1)) if match else None


def known_issue(db: Database, repo: str, number: int) -> tuple[str, str]:
    """The snapshot's (title, state) of an issue; an unknown issue counts as open."""
    with db.read() as session:
        row = session.execute(
            select(IssueSnapshot.title, IssueSnapshot.state).where(
                IssueSnapshot.repo == repo, IssueSnapshot.number == number
            )
        ).first()
    return (row[0] or "", row[1]) if row is not None else ("", "open")


def run_facts(run: Run | None) -> RunFacts | None:
    """The facts a command decision reads about a stored run."""
    if run is None:
        return None
    return RunFacts(run.id, str(run.status), run.stage, run.pr_number, run.error)


def permission_facts(decision: Decision) -> PermissionFacts:
    """The facts a command decision reads about the permission rule's answer."""
    held = decision.permission.name if decision.permission is not None else None
    return PermissionFacts(decision.allowed, decision.reason, held, decision.lookup_failed)


def command_facts(reads: RunReads, db: Database, target: CommandTarget, command: Command, user: str,
                  permission: PermissionFacts) -> CommandFacts:
    """Read the issue's live and newest runs for :func:`decide_command`."""
    live = reads.live_run_for_issue(target.repo, target.issue_number)
    reads_latest = command.name in ("retry", "status", "fix")
    latest = latest_run(db, target.repo, target.issue_number) if reads_latest else None
    return CommandFacts(command, user, permission, issue_state=target.state, live=run_facts(live),
                        latest=run_facts(latest), trigger_ref=target.trigger_ref)


def _ack(trigger_ref: str | None) -> dict[str, Any]:
    return {"trigger_ref": trigger_ref} if trigger_ref else {}


def _apply(session: Session, queue: RunQueue, target: CommandTarget, user: str,
           effect: Effect) -> CommandOutcome | None:
    """Carry out one database effect; an outcome when the result differs from the decision's."""
    if isinstance(effect, Enqueue):
        run, created = queue.intake.enqueue_in(
            session, target.repo, target.issue_number, installation_id=target.installation_id, title=target.title,
            mode=effect.mode, requested_by=user, reason=effect.reason, issue_updated_at=target.requested_at,
            trigger_ref=effect.trigger_ref,
        )
        if created:
            return CommandOutcome(True, f"queued run {run.id}", run.id)
        return CommandOutcome(False, already_working(RunFacts(run.id, str(run.status))), run.id)
    if isinstance(effect, Approve):
        queue.moves.set_status_in(session, effect.run_id, Status.READY, reason=effect.reason, actor=user,
                                  **_ack(effect.trigger_ref))
    elif isinstance(effect, Cancel):
        queue.moves.cancel_in(session, effect.run_id, reason=effect.reason, actor=user, **_ack(effect.trigger_ref))
    elif isinstance(effect, Retry):
        queue.moves.resume_in(session, effect.run_id, reason=effect.reason, actor=user, trigger_ref=effect.trigger_ref)
    return None


class GatheredFeedback(Protocol):
    """Feedback for ``/agent-z fix`` read from GitHub, recorded inside the decision's transaction."""

    def record_in(self, session: Session, queue: RunQueue) -> None:
        """Record the feedback (its notes and the run's wake-up) inside the caller's transaction."""


@dataclass(frozen=True)
class PreparedFeedback:
    """A :class:`SendFeedback` effect made ready before the transaction: its outcome, and what to
    record (None when it was refused)."""

    outcome: CommandOutcome
    gathered: GatheredFeedback | None = None


def _perform_in(session: Session, queue: RunQueue, target: CommandTarget, user: str, decision: CommandDecision,
                outcome: CommandOutcome, gathered: GatheredFeedback | None) -> CommandOutcome:
    for effect in decision.effects:
        if not isinstance(effect, SendFeedback):
            outcome = _apply(session, queue, target, user, effect) or outcome
        elif gathered is not None:
            gathered.record_in(session, queue)
    return outcome


def _repeated(command: Command, user: str) -> CommandDecision:
    return decide_command(CommandFacts(command, user, PermissionFacts(False, "not checked"), first_time=False))


def _record_repeat_in(session: Session, moves: Transitions, target: CommandTarget, user: str,
                      command: Command) -> CommandOutcome:
    """Record that a comment's command was already handled; nothing else happens."""
    repeated = _repeated(command, user)
    moves.add_event_in(session, None, "command", command=command.name, user=user, repo=target.repo,
                       issue=target.issue_number, accepted=False, reason=repeated.message)
    return CommandOutcome(False, repeated.message)


def _record_repeat(queue: RunQueue, target: CommandTarget, user: str, command: Command) -> CommandOutcome:
    with queue.db.begin() as session:
        return _record_repeat_in(session, queue.moves, target, user, command)


def _claim_in(session: Session, target: CommandTarget, user: str, record: CommandRecord) -> bool:
    """Claim the comment's command for this decision; False when another delivery already handled it."""
    if record.comment_id is None:
        return True
    return trust.claim_command_in(session, comment_id=record.comment_id, command_hash=command_key(record.command),
                                  repo=target.repo, issue_number=target.issue_number, login=user, at=record.at)


def _record_in(session: Session, moves: Transitions, target: CommandTarget, user: str, decision: CommandDecision,
               outcome: CommandOutcome, record: CommandRecord) -> CommandOutcome:
    """Claim the refusal window of a throttled refusal, give back a released claim, append the ``command`` event."""
    reply = decision.reply or not outcome.accepted
    if decision.throttled:
        reply = trust.claim_refusal_reply_in(session, repo=target.repo, issue_number=target.issue_number,
                                             login=user, at=record.at, window=REFUSAL_REPLY_SECONDS)
    elif decision.release:
        reply = False
    if decision.release and record.comment_id is not None:  # refused for now; a redelivery may ask again
        trust.release_command_in(session, comment_id=record.comment_id, command_hash=command_key(record.command))
    moves.add_event_in(session, outcome.run_id, "command", command=record.command.name, user=user,
                       repo=target.repo, issue=target.issue_number, accepted=outcome.accepted,
                       reason=outcome.message, permission=record.permission, replied=reply)
    return replace(outcome, replied=reply)


def perform(queue: RunQueue, target: CommandTarget, user: str, decision: CommandDecision, *,
            record: CommandRecord | None = None, feedback: PreparedFeedback | None = None) -> CommandOutcome:
    """Carry out a decision's database effects in one transaction; the outcome to record and report.

    With ``record``, the same transaction first claims the comment's command (when another
    delivery already claimed it, only that is recorded and nothing else happens), then also
    claims the refusal window of a throttled refusal, gives back the claim when the decision
    releases it, and appends the ``command`` event; an effect the store refuses
    (:class:`AgentZError`) then changes nothing and is recorded as the outcome, and
    ``outcome.replied`` says whether to reply. ``feedback`` is a :class:`SendFeedback` effect
    made ready before (reading GitHub cannot happen inside the transaction); what it gathered
    is recorded here. Nothing is written to GitHub here.
    """
    outcome = feedback.outcome if feedback is not None else CommandOutcome(decision.accepted, decision.message,
                                                                           decision.run_id)
    gathered = feedback.gathered if feedback is not None else None
    with queue.db.begin() as session:
        if record is not None and not _claim_in(session, target, user, record):
            return _record_repeat_in(session, queue.moves, target, user, record.command)
        try:
            with session.begin_nested():
                outcome = _perform_in(session, queue, target, user, decision, outcome, gathered)
        except AgentZError as exc:
            if record is None:
                raise
            outcome = CommandOutcome(False, f"Agent-Z could not do that: {exc}")
        if record is not None:
            outcome = _record_in(session, queue.moves, target, user, decision, outcome, record)
    return outcome


def execute(queue: RunQueue, db: Database, target: CommandTarget, command: Command, user: str) -> CommandOutcome:
    """Carry out a command by someone who may steer against the queue; the message explains the result.

    Only the database changes: the run's GitHub view (the 👀 on the command, the status
    comment, labels, check runs) follows from its new state (:mod:`workers.reporter`).
    ``fix`` needs GitHub and goes through :func:`handle_comment_command`.
    """
    facts = command_facts(queue.reads, db, target, command, user, PermissionFacts(True, "trusted caller"))
    return perform(queue, target, user, decide_command(facts))


FeedbackGatherer = Callable[[GitHubAPI | None, Database, Settings, Run, str, Actor], Awaitable[GatheredFeedback]]


async def handle_comment_command(
    gh: GitHubAPI | None,
    db: Database,
    settings: Settings,
    queue: RunQueue,
    *,
    target: CommandTarget,
    command: Command,
    actor: Actor,
    comment_id: int | None = None,
    decision: Decision | None = None,
    clock: Clock = now,
    gather_feedback: FeedbackGatherer | None = None,
) -> CommandOutcome:
    """Handle a command once per comment and command: decide (:func:`decide_command`), then carry it out.

    What the decision needs from GitHub is read first, with no database write; the comment's
    claim, the decision's database changes, its refusal window and the command event then
    commit in one transaction (:func:`perform`), and the reply goes to GitHub after that.
    ``gather_feedback`` reads what ``/agent-z fix`` sends (without it, ``fix`` is refused).
    """
    user = actor.login
    if comment_id is not None and await db.run(trust.command_claimed, db, comment_id=comment_id,
                                               command_hash=command_key(command)):
        return await db.run(_record_repeat, queue, target, user, command)
    if decision is None:
        decision = await check_actor(gh, db, settings, target.repo, actor, clock=clock)
    facts = await db.run(command_facts, queue.reads, db, target, command, user, permission_facts(decision))
    verdict = decide_command(facts)
    record = CommandRecord(command, decision.reason, clock(), comment_id)
    return await _carry_out(gh, db, settings, queue, target=target, actor=actor, verdict=verdict,
                            record=record, gather_feedback=gather_feedback)


async def _carry_out(
    gh: GitHubAPI | None, db: Database, settings: Settings, queue: RunQueue, *, target: CommandTarget,
    actor: Actor, verdict: CommandDecision, record: CommandRecord, gather_feedback: FeedbackGatherer | None,
) -> CommandOutcome:
    """Gather the feedback to send (it needs GitHub), then the decision's database effects and its
    record in one transaction, then the reply once that transaction committed."""
    user = actor.login
    feedback = None
    for effect in verdict.effects:
        if isinstance(effect, SendFeedback):
            feedback = await _prepare_feedback(gh, db, settings, queue.reads, effect, actor, gather_feedback)
    outcome = await db.run(perform, queue, target, user, verdict, record=record, feedback=feedback)
    if outcome.replied and gh is not None:
        body = truncate_bytes(redact_text(outcome.message, values=configured_secret_values(settings)), MAX_COMMENT)
        await gh.post(target.comments_url, data={"body": body})
    log.info("command handled", command=record.command.name, user=user, repo=target.repo,
             issue=target.issue_number, accepted=outcome.accepted, permission=record.permission)
    return outcome


async def _prepare_feedback(gh: GitHubAPI | None, db: Database, settings: Settings, reads: RunReads,
                            effect: SendFeedback, actor: Actor,
                            gather_feedback: FeedbackGatherer | None) -> PreparedFeedback:
    """Read what a :class:`SendFeedback` effect sends, writing nothing; a refusal becomes the outcome."""
    try:
        if gather_feedback is None:
            raise AgentZError("feedback cannot be sent from here")
        run = await db.run(reads.get, effect.run_id)
        gathered = await gather_feedback(gh, db, settings, run, effect.text, actor)
    except AgentZError as exc:
        return PreparedFeedback(CommandOutcome(False, f"Agent-Z could not do that: {exc}"))
    return PreparedFeedback(CommandOutcome(True, f"sent the feedback to run {run.id} ({run.status})", run.id),
                            gathered)
