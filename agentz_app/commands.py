"""Slash commands in issue and pull-request comments, with permission checks.

``/agent-z run|cancel|retry|status|plan`` is recognised on the first line or on any
line that starts with it (case-insensitive); fenced code, inline code and quoted
lines are ignored. Only users whose repository permission is write, maintain or
admin may command; anyone else gets one polite reply and nothing runs.

Permission answers are cached for :data:`PERMISSION_TTL_SECONDS` in the ``kv`` table
(key ``permission:<repo>:<login>``), so a burst of commands costs one request and
every process sees a revoked permission within a minute.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from agentz_app.config import Settings
from agentz_app.errors import AgentZError
from agentz_app.logs import get_logger
from agentz_app.scheduling.markdown import prose_lines
from agentz_app.store.db import Database
from agentz_app.store.models import IssueSnapshot, KeyValue, PullSnapshot, Run, now
from agentz_app.store.runs import RunQueue
from agentz_app.store.states import LIVE, RETRYABLE, Status

log = get_logger(__name__)

COMMANDS = ("run", "cancel", "retry", "status", "plan")
WRITE_PERMISSIONS = frozenset({"admin", "maintain", "write"})
PERMISSION_TTL_SECONDS = 60.0
PERMISSION_PREFIX = "permission:"
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


def is_own_or_bot(comment: dict[str, Any], settings: Settings) -> bool:
    """True for comments by our App or by any bot: they never command (no loops)."""
    app = comment.get("performed_via_github_app") or {}
    if settings.github_app_id is not None and isinstance(app, dict) and app.get("id") == settings.github_app_id:
        return True
    user = comment.get("user") or {}
    login = str(user.get("login", "")).lower()
    return login == f"{settings.github_app_slug}[bot]".lower() or user.get("type") == "Bot" or login.endswith("[bot]")


def can_write(answer: dict[str, Any]) -> bool:
    """True when a collaborator-permission answer grants write, maintain or admin."""
    return answer.get("role_name") in WRITE_PERMISSIONS or answer.get("permission") in WRITE_PERMISSIONS


async def fetch_permission(gh: Any, db: Database, repo: str, user: str, *, ttl: float = PERMISSION_TTL_SECONDS
                           ) -> dict[str, Any]:
    """The user's permission on ``repo`` (``permission``, ``role_name``), cached in ``kv``."""
    key = f"{PERMISSION_PREFIX}{repo}:{user.lower()}"
    with db.read() as session:
        row = session.get(KeyValue, key)
        if row is not None and now() - float(row.value.get("at", 0.0)) < ttl:
            return dict(row.value)
    answer = await gh.getitem(f"/repos/{repo}/collaborators/{user}/permission")
    if not isinstance(answer, dict):
        raise AgentZError(f"unreadable permission answer for {user} on {repo}")
    value = {"permission": answer.get("permission"), "role_name": answer.get("role_name"), "at": now()}
    with db.begin() as session:
        row = session.get(KeyValue, key)
        if row is None:
            session.add(KeyValue(key=key, value=value, updated_at=now()))
        else:
            row.value = value
            row.updated_at = now()
    return value


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
    """Carry out an authorised command against the queue; the message explains the result."""
    live = queue.live_run_for_issue(target.repo, target.issue_number)
    name = command.name
    if name in ("run", "plan") and target.state != "open":
        return CommandOutcome(False, "This issue is closed; reopen it first.")
    if name == "run":
        if live is not None and live.status == Status.AWAITING_APPROVAL:
            run = queue.set_status(live.id, Status.READY, reason=f"plan approved by @{user}", actor=user)
            return CommandOutcome(True, f"approved the plan of run {run.id}", run.id)
        return _enqueue(queue, target, user, mode="full")
    if name == "plan":
        return _enqueue(queue, target, user, mode="plan_only")
    if name == "cancel":
        if live is None:
            return CommandOutcome(False, "There is no active Agent-Z run on this issue to cancel.")
        run = queue.cancel(live.id, reason=f"cancelled by @{user}", actor=user)
        return CommandOutcome(True, f"cancelled run {run.id}", run.id)
    if name == "retry":
        if live is not None:
            return CommandOutcome(False, f"Run `{live.id}` is still {live.status}; nothing to retry.", live.id)
        last = latest_run(db, target.repo, target.issue_number)
        if last is not None and last.status in RETRYABLE:
            run = queue.resume(last.id, reason=f"retried by @{user}", actor=user)
            return CommandOutcome(True, f"requeued run {run.id}", run.id)
        return _enqueue(queue, target, user, mode="full")
    if name == "status":
        shown = live or latest_run(db, target.repo, target.issue_number)
        if shown is None:
            return CommandOutcome(True, "Agent-Z has no run for this issue yet. Comment `/agent-z run` to start one.")
        return CommandOutcome(True, status_text(shown), shown.id)
    return CommandOutcome(False, f"Unknown command. Use one of: {', '.join('`/agent-z ' + c + '`' for c in COMMANDS)}.")


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
    user: str,
) -> CommandOutcome:
    """Check the commenter's permission, execute, reply when useful, record an event."""
    if gh is None:
        outcome = CommandOutcome(False, "GitHub is not configured; cannot verify the commenter's permission")
        queue.add_event(None, "command", command=command.name, user=user, repo=target.repo,
                        issue=target.issue_number, accepted=False, reason=outcome.message)
        return outcome
    answer = await fetch_permission(gh, db, target.repo, user)
    if not can_write(answer):
        outcome = CommandOutcome(False, refusal_text(user, answer.get("role_name") or answer.get("permission")))
    else:
        try:
            outcome = execute(queue, db, target, command, user)
        except AgentZError as exc:
            outcome = CommandOutcome(False, f"Agent-Z could not do that: {exc}")
    queue.add_event(outcome.run_id, "command", command=command.name, user=user, repo=target.repo,
                    issue=target.issue_number, accepted=outcome.accepted, reason=outcome.message)
    if needs_reply(command, outcome):
        await gh.post(target.comments_url, data={"body": outcome.message})
    log.info("command handled", command=command.name, user=user, repo=target.repo, issue=target.issue_number,
             accepted=outcome.accepted)
    return outcome
