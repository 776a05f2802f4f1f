"""Slash commands and what to do about them, decided from plain facts (pure).

:func:`parse_command` finds ``/agent-z run|cancel|retry|status|plan|fix`` in the prose
of a comment. :func:`decide_command` turns a command, the permission decision about
its author, the issue and its runs into a :class:`CommandDecision`: the effects the
shell carries out (enqueue, approve, cancel, retry, send feedback), the outcome
recorded in the ``command`` event and the reply to post, if any. A run's GitHub view
(the 👀 on the command, the status comment) follows from its new state and the
``trigger_ref`` the effects carry, so no effect writes to GitHub except the reply.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from agentz_app.domain.markdown import prose_lines
from agentz_app.domain.states import LIVE, RETRYABLE, Status

COMMANDS = ("run", "cancel", "retry", "status", "plan", "fix")
ALREADY_HANDLED = "already handled"
ALREADY_ANSWERED = "already answered by this run"

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


def command_key(command: Command) -> str:
    """A stable hash of what a command asks for (name and arguments, whitespace-normalised)."""
    line = " ".join([command.name, *command.args.lower().split()])
    return hashlib.sha256(line.encode()).hexdigest()


def same_command(first: Command | None, second: Command | None) -> bool:
    """True when both are commands asking for the same thing."""
    return first is not None and second is not None and command_key(first) == command_key(second)


# Facts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunFacts:
    """What a command decision needs to know about one run."""

    id: str
    status: str
    stage: str | None = None
    pr_number: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class PermissionFacts:
    """The permission rule's answer about the command's author."""

    allowed: bool
    reason: str
    permission: str | None = None  # the permission GitHub reported (read, triage …), for the refusal
    lookup_failed: bool = False  # nothing is known: refuse without saying why


@dataclass(frozen=True)
class CommandFacts:
    """Everything :func:`decide_command` reads, gathered by the shell."""

    command: Command
    user: str
    permission: PermissionFacts
    issue_state: str = "open"
    live: RunFacts | None = None  # the issue's live run
    latest: RunFacts | None = None  # the issue's newest run, live or not
    first_time: bool = True  # this comment and command were not handled before
    trigger_ref: str | None = None  # what GitHub acknowledges for a command that changes a run


# Effects ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Enqueue:
    """Create a queued run for the issue (``mode`` full or plan_only)."""

    mode: str
    reason: str
    trigger_ref: str | None = None


@dataclass(frozen=True)
class Approve:
    """Move a run awaiting approval to ready."""

    run_id: str
    reason: str
    trigger_ref: str | None = None


@dataclass(frozen=True)
class Cancel:
    """Cancel a live run."""

    run_id: str
    reason: str
    trigger_ref: str | None = None


@dataclass(frozen=True)
class Retry:
    """Make a retryable run claimable again."""

    run_id: str
    reason: str
    trigger_ref: str | None = None


@dataclass(frozen=True)
class SendFeedback:
    """Send ``text`` to the developer of the run's pull request, like a review requesting changes."""

    run_id: str
    text: str


Effect = Enqueue | Approve | Cancel | Retry | SendFeedback


@dataclass(frozen=True)
class CommandDecision:
    """What to do about one command: effects, the outcome to record, and the reply.

    ``reply`` is posted after the database changes commit. A ``throttled`` reply (a
    refusal) is posted only when the refusal window for the issue and person is open.
    ``release`` gives the comment's command claim back, so a redelivery may ask again.
    """

    accepted: bool
    message: str
    run_id: str | None = None
    effects: tuple[Effect, ...] = ()
    reply: bool = False
    throttled: bool = False
    release: bool = False


def status_text(run: RunFacts) -> str:
    """A one-paragraph description of a run for the ``status`` command."""
    detail = f" (stage {run.stage})" if run.stage else ""
    pr = f", pull request #{run.pr_number}" if run.pr_number else ""
    error = f"\n\nLast error: {run.error}" if run.error and run.status not in LIVE else ""
    return f"Run `{run.id}` is **{run.status}**{detail}{pr}.{error}"


def refusal_text(user: str, permission: str | None) -> str:
    """The polite reply to someone without write access."""
    held = f" (you have `{permission}` access)" if permission else ""
    return (
        f"Sorry @{user}, only people with write, maintain or admin permission on this repository "
        f"can control Agent-Z{held}. A maintainer can run it for you with `/agent-z run`."
    )


def already_working(run: RunFacts) -> str:
    """The answer to a request for a run while one is live."""
    return f"Agent-Z is already working on this issue (run `{run.id}` is {run.status})."


def unknown_text() -> str:
    """The answer to an unknown command."""
    return f"Unknown command. Use one of: {', '.join('`/agent-z ' + c + '`' for c in COMMANDS)}."


def _accepted(message: str, run_id: str | None, *effects: Effect, reply: bool = False) -> CommandDecision:
    return CommandDecision(True, message, run_id, tuple(effects), reply=reply)


def _refused(message: str, run_id: str | None = None) -> CommandDecision:
    return CommandDecision(False, message, run_id, reply=True)


def _enqueue(facts: CommandFacts, mode: str) -> CommandDecision:
    if facts.live is not None:
        return _refused(already_working(facts.live), facts.live.id)
    word = "plan" if mode == "plan_only" else "run"
    effect = Enqueue(mode, f"/agent-z {word} by @{facts.user}", facts.trigger_ref)
    return _accepted("queued a run", None, effect)


def _authorised(facts: CommandFacts) -> CommandDecision:
    """The decision for someone who may steer."""
    name = facts.command.name
    if name in ("run", "plan") and facts.issue_state != "open":
        return _refused("This issue is closed; reopen it first.")
    decide = _BY_NAME.get(name)
    return decide(facts) if decide is not None else _refused(unknown_text())


def _run(facts: CommandFacts) -> CommandDecision:
    live = facts.live
    if live is not None and live.status == Status.AWAITING_APPROVAL:
        return _accepted(f"approved the plan of run {live.id}", live.id,
                         Approve(live.id, f"plan approved by @{facts.user}", facts.trigger_ref))
    return _enqueue(facts, "full")


def _plan(facts: CommandFacts) -> CommandDecision:
    return _enqueue(facts, "plan_only")


def _cancel(facts: CommandFacts) -> CommandDecision:
    live = facts.live
    if live is None:
        return _refused("There is no active Agent-Z run on this issue to cancel.")
    return _accepted(f"cancelled run {live.id}", live.id,
                     Cancel(live.id, f"cancelled by @{facts.user} with `/agent-z cancel`", facts.trigger_ref))


def _retry(facts: CommandFacts) -> CommandDecision:
    live, last = facts.live, facts.latest
    if live is not None:
        return _refused(f"Run `{live.id}` is still {live.status}; nothing to retry.", live.id)
    if last is not None and last.status in RETRYABLE:
        return _accepted(f"requeued run {last.id}", last.id, Retry(last.id, f"retried by @{facts.user}",
                                                                   facts.trigger_ref))
    return _enqueue(facts, "full")


def _status(facts: CommandFacts) -> CommandDecision:
    shown = facts.live or facts.latest
    if shown is None:
        return _accepted("Agent-Z has no run for this issue yet. Comment `/agent-z run` to start one.", None,
                         reply=True)
    return _accepted(status_text(shown), shown.id, reply=True)


def _fix(facts: CommandFacts) -> CommandDecision:
    if not facts.command.args:
        return _refused("Say what to change: `/agent-z fix <what to change>`.")
    run = facts.latest
    if run is None or run.pr_number is None or run.status not in (Status.WAITING_CHECKS, Status.DONE):
        detail = f" (run `{run.id}` is {run.status})" if run is not None else ""
        return _refused(f"There is no Agent-Z pull request waiting for feedback here{detail}.",
                        run.id if run is not None else None)
    return _accepted(f"sent the feedback to run {run.id}", run.id, SendFeedback(run.id, facts.command.args))


_BY_NAME: dict[str, Callable[[CommandFacts], CommandDecision]] = {
    "run": _run, "plan": _plan, "cancel": _cancel, "retry": _retry, "status": _status, "fix": _fix,
}


def decide_command(facts: CommandFacts) -> CommandDecision:
    """What to do about a command, given who sent it, the issue and its runs.

    A command already handled for this comment does nothing and says nothing. An
    unverifiable permission refuses silently and releases the claim; someone without
    permission gets one throttled refusal and nothing runs. Accepted work is reported
    by the run's own status comment: replies go only to refusals, problems and ``status``.
    """
    if not facts.first_time:
        return CommandDecision(False, ALREADY_HANDLED)
    permission = facts.permission
    if permission.lookup_failed:
        return CommandDecision(False, f"cannot verify @{facts.user}'s permission: {permission.reason}",
                               release=True)
    if not permission.allowed:
        return CommandDecision(False, refusal_text(facts.user, permission.permission), reply=True, throttled=True)
    return _authorised(facts)


def answered_request(command: Command, answered: RunFacts | None) -> str | None:
    """Why a ``run`` or ``plan`` is dropped because a run already answered it (None: go on).

    A ``run`` that finds the answering run awaiting approval approves it instead.
    """
    if command.name not in ("run", "plan") or answered is None:
        return None
    if command.name == "run" and answered.status == Status.AWAITING_APPROVAL:
        return None
    return ALREADY_ANSWERED


def edit_skip_reason(*, sender: str, author: str, previous_body: str | None, command: Command) -> str | None:
    """Why an edited comment's command must not run (None: it may)."""
    if not sender or sender.lower() != author.lower():
        return "comment edited by someone other than its author"
    if previous_body is not None and same_command(parse_command(previous_body), command):
        return "the edit kept the same command"
    return None


# The trigger label ------------------------------------------------------------------


def closed_to_labels(*, issue_state: str, is_pull_request: bool) -> str | None:
    """Why a label on this issue neither vouches nor triggers (None: it may)."""
    if issue_state != "open":
        return "issue is not open"
    if is_pull_request:
        return "pull request"
    return None


@dataclass(frozen=True)
class LabelDecision:
    """What the trigger label does: enqueue a run, or the reason it does not (for the event)."""

    enqueue: Enqueue | None = None
    refusal: str | None = None
    run_id: str | None = None  # the run a refusal is about


def decide_trigger_label(*, label: str, sender: str, permission: PermissionFacts,
                         answered: RunFacts | None) -> LabelDecision:
    """The trigger label on an open issue: enqueue when the person who added it may steer and no run
    already answered this state of the issue."""
    if not permission.allowed:
        return LabelDecision(refusal=f"@{sender} may not steer Agent-Z: {permission.reason}")
    if answered is not None:
        return LabelDecision(refusal=ALREADY_ANSWERED, run_id=answered.id)
    return LabelDecision(enqueue=Enqueue("full", f"label {label!r} added by @{sender}", "issue"))
