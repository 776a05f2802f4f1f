"""Slash commands in issue and pull-request comments, with the permission rule.

``/agent-z run|cancel|retry|status|plan|fix`` is recognised on the first line or on any
line that starts with it (case-insensitive); fenced code, inline code and quoted
lines are ignored. Only people who pass the permission rule
(:mod:`agentz_app.ingress.permissions`: write, maintain or admin, or a bot listed in
``TRUSTED_BOTS``) may command. Anyone else gets at most one polite reply per issue per
hour (:data:`REFUSAL_REPLY_SECONDS`, remembered in ``refusal_replies``) and nothing runs.

A command is handled once per comment and command line (``command_executions``): a
redelivery, or an edit that keeps the command, repeats nothing; an edit that adds a
new command runs it once.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from agentz_app.config import Settings
from agentz_app.domain.markdown import prose_lines
from agentz_app.domain.states import LIVE, RETRYABLE, Status
from agentz_app.errors import AgentZError
from agentz_app.github.events import BadPayload, Comment, parse_payload
from agentz_app.ingress.permissions import (
    Actor,
    Clock,
    Decision,
    Permission,
    TrustPolicy,
    check_actor,
)
from agentz_app.logs import get_logger
from agentz_app.reporting.comments import MAX_COMMENT
from agentz_app.reporting.text import truncate_bytes
from agentz_app.secrets import configured_secret_values, redact_text
from agentz_app.store import trust
from agentz_app.store.db import Database
from agentz_app.store.models import IssueSnapshot, PullSnapshot, Run, now
from agentz_app.store.runs import RunQueue

log = get_logger(__name__)

COMMANDS = ("run", "cancel", "retry", "status", "plan", "fix")
REFUSAL_REPLY_SECONDS = 3600.0
OWN_BRANCH = re.compile(r"^agent-z/issue-(\d+)(?:-|$)")

_COMMAND_LINE = re.compile(r"^\s*/agent-z(?![\w-])(?:\s+(?P<name>\S+))?(?P<args>.*)$", re.IGNORECASE)


@dataclass(frozen=True)
class Command:
    """A parsed slash command; ``name`` is one of :data:`COMMANDS` or ``unknown``."""

    name: str
    args: str = ""
    raw: str = ""


def parse_command(body: str) -> Command | None:
    """The first ``/agent-z`` command line in the prose of a comment body, or None."""
    if "/agent-z" not in (body or "").lower():
        return None  # nothing to find: skip parsing the Markdown
    for line in prose_lines(body):
        match = _COMMAND_LINE.match(line)
        if match is None:
            continue
        name = (match.group("name") or "").lower()
        return Command(name if name in COMMANDS else "unknown", match.group("args").strip(), line.strip())
    return None


def mentions_app(body: str, slug: str) -> bool:
    """True when the prose of ``body`` mentions the App (``@slug`` or ``@slug[bot]``); code and quotes do not count."""
    if not slug or f"@{slug.lower()}" not in (body or "").lower():
        return False
    mention = re.compile(rf"(?<![\w@/-])@{re.escape(slug)}(?:\[bot\])?(?![\w-])", re.IGNORECASE)
    return any(mention.search(line) for line in prose_lines(body))


def command_key(command: Command) -> str:
    """A stable hash of what a command asks for (name and arguments, whitespace-normalised)."""
    line = " ".join([command.name, *command.args.lower().split()])
    return hashlib.sha256(line.encode()).hexdigest()


def same_command(first: Command | None, second: Command | None) -> bool:
    """True when both are commands asking for the same thing."""
    return first is not None and second is not None and command_key(first) == command_key(second)


def ignores_comment(comment: Comment, settings: Settings) -> bool:
    """True for comments that never command and get no reply: our App's own (no loops), and
    any bot not listed in ``TRUSTED_BOTS``."""
    app = comment.performed_via_github_app
    if settings.github_app_id is not None and app is not None and app.id == settings.github_app_id:
        return True
    actor = Actor.of(comment.user)
    policy = TrustPolicy.from_settings(settings)
    return policy.is_own(actor) or (actor.bot and actor.login.lower() not in policy.trusted_bots)


def ignores_commenter(comment: Mapping[str, Any], settings: Settings) -> bool:
    """:func:`ignores_comment` for a raw comment object; one that does not parse is ignored."""
    try:
        parsed = parse_payload(Comment, "comment", {"id": 0, **comment})
    except BadPayload:
        return True
    return ignores_comment(parsed, settings)


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


def _enqueue(queue: RunQueue, target: CommandTarget, user: str, *, mode: str) -> CommandOutcome:
    run, created = queue.enqueue(
        target.repo,
        target.issue_number,
        installation_id=target.installation_id,
        title=target.title,
        mode=mode,
        requested_by=user,
        reason=f"/agent-z {'plan' if mode == 'plan_only' else 'run'} by @{user}",
        issue_updated_at=target.requested_at,
        trigger_ref=target.trigger_ref,
    )
    if created:
        return CommandOutcome(True, f"queued run {run.id}", run.id)
    return CommandOutcome(False, f"Agent-Z is already working on this issue (run `{run.id}` is {run.status}).", run.id)


def status_text(run: Run) -> str:
    """A one-paragraph description of a run for the ``status`` command (pure)."""
    detail = f" (stage {run.stage})" if run.stage else ""
    pr = f", pull request #{run.pr_number}" if run.pr_number else ""
    error = f"\n\nLast error: {run.error}" if run.error and run.status not in LIVE else ""
    return f"Run `{run.id}` is **{run.status}**{detail}{pr}.{error}"


def execute(queue: RunQueue, db: Database, target: CommandTarget, command: Command, user: str) -> CommandOutcome:
    """Carry out an authorised command against the queue; the message explains the result.

    Only the database changes: the run's GitHub view (the 👀 on the command, the status
    comment, labels, check runs) follows from its new state (:mod:`workers.reporter`).
    """
    live = queue.live_run_for_issue(target.repo, target.issue_number)
    ack: dict[str, Any] = {"trigger_ref": target.trigger_ref} if target.trigger_ref else {}
    name = command.name
    if name in ("run", "plan") and target.state != "open":
        return CommandOutcome(False, "This issue is closed; reopen it first.")
    if name == "run":
        if live is not None and live.status == Status.AWAITING_APPROVAL:
            run = queue.set_status(live.id, Status.READY, reason=f"plan approved by @{user}", actor=user, **ack)
            return CommandOutcome(True, f"approved the plan of run {run.id}", run.id)
        return _enqueue(queue, target, user, mode="full")
    if name == "plan":
        return _enqueue(queue, target, user, mode="plan_only")
    if name == "cancel":
        if live is None:
            return CommandOutcome(False, "There is no active Agent-Z run on this issue to cancel.")
        run = queue.cancel(live.id, reason=f"cancelled by @{user} with `/agent-z cancel`", actor=user, **ack)
        return CommandOutcome(True, f"cancelled run {run.id}", run.id)
    if name == "retry":
        if live is not None:
            return CommandOutcome(False, f"Run `{live.id}` is still {live.status}; nothing to retry.", live.id)
        last = latest_run(db, target.repo, target.issue_number)
        if last is not None and last.status in RETRYABLE:
            run = queue.resume(last.id, reason=f"retried by @{user}", actor=user, trigger_ref=target.trigger_ref)
            return CommandOutcome(True, f"requeued run {run.id}", run.id)
        return _enqueue(queue, target, user, mode="full")
    if name == "status":
        shown = live or latest_run(db, target.repo, target.issue_number)
        if shown is None:
            return CommandOutcome(True, "Agent-Z has no run for this issue yet. Comment `/agent-z run` to start one.")
        return CommandOutcome(True, status_text(shown), shown.id)
    return CommandOutcome(False, f"Unknown command. Use one of: {', '.join('`/agent-z ' + c + '`' for c in COMMANDS)}.")


async def execute_fix(gh: Any, db: Database, settings: Settings, queue: RunQueue, target: CommandTarget,
                      command: Command, actor: Actor) -> CommandOutcome:
    """``/agent-z fix <what>`` by someone who may steer: feedback for the developer of the issue's
    open Agent-Z pull request, like a review that requests changes (same branch, same PR)."""
    from agentz_app.ingress.runs import request_conversation_fix  # the ingress imports this module

    if not command.args:
        return CommandOutcome(False, "Say what to change: `/agent-z fix <what to change>`.")
    run = latest_run(db, target.repo, target.issue_number)
    if run is None or run.pr_number is None or run.status not in (Status.WAITING_CHECKS, Status.DONE):
        detail = f" (run `{run.id}` is {run.status})" if run is not None else ""
        return CommandOutcome(False, f"There is no Agent-Z pull request waiting for feedback here{detail}.",
                              run.id if run is not None else None)
    moved = await request_conversation_fix(gh, db, settings, queue, run, text=command.args, author=actor)
    return CommandOutcome(True, f"sent the feedback to run {moved.id} ({moved.status})", moved.id)


# Replies are posted for refusals, problems and status; accepted work is reported by
# the run's own status comment, which keeps content-creating requests low.
def needs_reply(command: Command, outcome: CommandOutcome) -> bool:
    return command.name == "status" or not outcome.accepted


def refusal_text(user: str, permission: str | None) -> str:
    """The polite reply to someone without write access."""
    held = f" (you have `{permission}` access)" if permission else ""
    return (
        f"Sorry @{user}, only people with write, maintain or admin permission on this repository "
        f"can control Agent-Z{held}. A maintainer can run it for you with `/agent-z run`."
    )


async def handle_comment_command(
    gh: Any,
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
) -> CommandOutcome:
    """Apply the permission rule, execute once per comment and command, reply when useful, record an event."""
    user = actor.login
    key = command_key(command)
    if comment_id is not None and not trust.claim_command(
        db, comment_id=comment_id, command_hash=key, repo=target.repo, issue_number=target.issue_number,
        login=user, at=clock(),
    ):
        outcome = CommandOutcome(False, "already handled")
        queue.add_event(None, "command", command=command.name, user=user, repo=target.repo,
                        issue=target.issue_number, accepted=False, reason=outcome.message)
        return outcome
    try:
        outcome, decision = await _decide_and_execute(gh, db, settings, queue, target=target, command=command,
                                                      actor=actor, decision=decision, clock=clock)
    except BaseException:
        if comment_id is not None:  # let a redelivery of this delivery try again
            trust.release_command(db, comment_id=comment_id, command_hash=key)
        raise
    if decision.lookup_failed and comment_id is not None:  # refused for now; a redelivery may ask again
        trust.release_command(db, comment_id=comment_id, command_hash=key)
    return outcome


async def _decide_and_execute(
    gh: Any, db: Database, settings: Settings, queue: RunQueue, *, target: CommandTarget, command: Command,
    actor: Actor, decision: Decision | None, clock: Clock,
) -> tuple[CommandOutcome, Decision]:
    user = actor.login
    if decision is None:
        decision = await check_actor(gh, db, settings, target.repo, actor, clock=clock)
    reply = False
    if decision.lookup_failed:
        # Nothing is known: refuse without telling anyone they lack access.
        outcome = CommandOutcome(False, f"cannot verify @{user}'s permission: {decision.reason}")
    elif not decision.allowed:
        held = decision.permission.name if decision.permission is not None else None
        outcome = CommandOutcome(False, refusal_text(user, held))
        reply = trust.claim_refusal_reply(db, repo=target.repo, issue_number=target.issue_number, login=user,
                                          at=clock(), window=REFUSAL_REPLY_SECONDS)
    else:
        try:
            if command.name == "fix":
                outcome = await execute_fix(gh, db, settings, queue, target, command, actor)
            else:
                outcome = execute(queue, db, target, command, user)
        except AgentZError as exc:
            outcome = CommandOutcome(False, f"Agent-Z could not do that: {exc}")
        reply = needs_reply(command, outcome)
    queue.add_event(outcome.run_id, "command", command=command.name, user=user, repo=target.repo,
                    issue=target.issue_number, accepted=outcome.accepted, reason=outcome.message,
                    permission=decision.reason, replied=reply)
    if reply and gh is not None:
        body = truncate_bytes(redact_text(outcome.message, values=configured_secret_values(settings)), MAX_COMMENT)
        await gh.post(target.comments_url, data={"body": body})
    log.info("command handled", command=command.name, user=user, repo=target.repo, issue=target.issue_number,
             accepted=outcome.accepted, permission=decision.reason)
    return outcome, decision
