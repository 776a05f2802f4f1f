"""Command decisions, table-driven: one set of facts in, the effects, outcome and reply out."""

from __future__ import annotations

import pytest

from agentz_app.domain.commands import (
    ALREADY_ANSWERED,
    ALREADY_HANDLED,
    Approve,
    Cancel,
    Command,
    CommandDecision,
    CommandFacts,
    Enqueue,
    LabelDecision,
    PermissionFacts,
    Retry,
    RunFacts,
    SendFeedback,
    answered_request,
    closed_to_labels,
    decide_command,
    decide_trigger_label,
    edit_skip_reason,
    refusal_text,
)

MAINTAINER = PermissionFacts(True, "write access", "write")
OUTSIDER = PermissionFacts(False, "no write access", "read")
UNTRUSTED_BOT = PermissionFacts(False, "a bot not listed in TRUSTED_BOTS")
LOOKUP_FAILED = PermissionFacts(False, "permission lookup failed", lookup_failed=True)
REF = "comment:901"

QUEUED = RunFacts("r-live", "queued")
DEVELOPING = RunFacts("r-live", "developing", stage="developing")
AWAITING = RunFacts("r-plan", "awaiting_approval")
FAILED = RunFacts("r-old", "failed", error="boom")
NEEDS_HUMAN = RunFacts("r-old", "needs_human")
DONE_WITH_PR = RunFacts("r-pr", "done", pr_number=12)
WAITING_WITH_PR = RunFacts("r-pr", "waiting_checks", pr_number=12)
MERGED = RunFacts("r-old", "merged", pr_number=12)


def facts(name: str, *, args: str = "", permission: PermissionFacts = MAINTAINER, state: str = "open",
          live: RunFacts | None = None, latest: RunFacts | None = None, first_time: bool = True) -> CommandFacts:
    return CommandFacts(Command(name, args), "alice", permission, issue_state=state, live=live, latest=latest,
                        first_time=first_time, trigger_ref=REF)


def accepted(message: str, run_id: str | None, *effects: object, reply: bool = False) -> CommandDecision:
    return CommandDecision(True, message, run_id, tuple(effects), reply=reply)  # type: ignore[arg-type]


def refused(message: str, run_id: str | None = None) -> CommandDecision:
    return CommandDecision(False, message, run_id, reply=True)


ROWS: list[tuple[str, CommandFacts, CommandDecision]] = [
    # Permission and idempotency come before anything the command asks for.
    ("duplicate delivery does nothing and says nothing",
     facts("run", first_time=False), CommandDecision(False, ALREADY_HANDLED)),
    ("duplicate of a refused command says nothing either",
     facts("run", permission=OUTSIDER, first_time=False), CommandDecision(False, ALREADY_HANDLED)),
    ("outsider gets one throttled refusal and nothing runs",
     facts("run", permission=OUTSIDER),
     CommandDecision(False, refusal_text("alice", "read"), reply=True, throttled=True)),
    ("outsider cannot cancel a live run",
     facts("cancel", permission=OUTSIDER, live=DEVELOPING),
     CommandDecision(False, refusal_text("alice", "read"), reply=True, throttled=True)),
    ("outsider cannot ask for feedback",
     facts("fix", args="do it", permission=OUTSIDER, latest=DONE_WITH_PR),
     CommandDecision(False, refusal_text("alice", "read"), reply=True, throttled=True)),
    ("untrusted bot is refused without naming a permission",
     facts("status", permission=UNTRUSTED_BOT),
     CommandDecision(False, refusal_text("alice", None), reply=True, throttled=True)),
    ("failed permission lookup refuses silently and releases the claim",
     facts("run", permission=LOOKUP_FAILED),
     CommandDecision(False, "cannot verify @alice's permission: permission lookup failed", release=True)),
    # run / plan
    ("run on an open issue enqueues a full run",
     facts("run"), accepted("queued a run", None, Enqueue("full", "/agent-z run by @alice", REF))),
    ("plan enqueues a plan-only run",
     facts("plan"), accepted("queued a run", None, Enqueue("plan_only", "/agent-z plan by @alice", REF))),
    ("run on a closed issue is refused",
     facts("run", state="closed"), refused("This issue is closed; reopen it first.")),
    ("plan on a closed issue is refused",
     facts("plan", state="closed"), refused("This issue is closed; reopen it first.")),
    ("run while a run is already running enqueues nothing",
     facts("run", live=DEVELOPING),
     refused("Agent-Z is already working on this issue (run `r-live` is developing).", "r-live")),
    ("plan while a run is queued enqueues nothing",
     facts("plan", live=QUEUED),
     refused("Agent-Z is already working on this issue (run `r-live` is queued).", "r-live")),
    ("run approves a plan awaiting approval",
     facts("run", live=AWAITING),
     accepted("approved the plan of run r-plan", "r-plan", Approve("r-plan", "plan approved by @alice", REF))),
    ("plan does not approve a plan awaiting approval",
     facts("plan", live=AWAITING),
     refused("Agent-Z is already working on this issue (run `r-plan` is awaiting_approval).", "r-plan")),
    ("run after a terminal run enqueues a new one",
     facts("run", latest=MERGED), accepted("queued a run", None, Enqueue("full", "/agent-z run by @alice", REF))),
    # cancel
    ("cancel stops the live run",
     facts("cancel", live=DEVELOPING),
     accepted("cancelled run r-live", "r-live",
              Cancel("r-live", "cancelled by @alice with `/agent-z cancel`", REF))),
    ("cancel without a live run is refused",
     facts("cancel", latest=FAILED), refused("There is no active Agent-Z run on this issue to cancel.")),
    ("cancel works on a closed issue",
     facts("cancel", state="closed", live=QUEUED),
     accepted("cancelled run r-live", "r-live",
              Cancel("r-live", "cancelled by @alice with `/agent-z cancel`", REF))),
    # retry
    ("retry requeues a failed run",
     facts("retry", latest=FAILED), accepted("requeued run r-old", "r-old", Retry("r-old", "retried by @alice", REF))),
    ("retry requeues a run that needs a human",
     facts("retry", latest=NEEDS_HUMAN),
     accepted("requeued run r-old", "r-old", Retry("r-old", "retried by @alice", REF))),
    ("retry while a run is live retries nothing",
     facts("retry", live=DEVELOPING, latest=DEVELOPING),
     refused("Run `r-live` is still developing; nothing to retry.", "r-live")),
    ("retry after a merged run starts a new one",
     facts("retry", latest=MERGED), accepted("queued a run", None, Enqueue("full", "/agent-z run by @alice", REF))),
    ("retry without any run starts one",
     facts("retry"), accepted("queued a run", None, Enqueue("full", "/agent-z run by @alice", REF))),
    # status
    ("status without a run explains how to start one",
     facts("status"),
     accepted("Agent-Z has no run for this issue yet. Comment `/agent-z run` to start one.", None, reply=True)),
    ("status shows the live run with its stage",
     facts("status", live=DEVELOPING, latest=FAILED),
     accepted("Run `r-live` is **developing** (stage developing).", "r-live", reply=True)),
    ("status shows the last error of a finished run",
     facts("status", latest=FAILED), accepted("Run `r-old` is **failed**.\n\nLast error: boom", "r-old", reply=True)),
    ("status on a closed issue still answers",
     facts("status", state="closed", latest=MERGED),
     accepted("Run `r-old` is **merged**, pull request #12.", "r-old", reply=True)),
    # fix
    ("fix sends feedback to a finished pull request",
     facts("fix", args="rename it", latest=DONE_WITH_PR),
     accepted("sent the feedback to run r-pr", "r-pr", SendFeedback("r-pr", "rename it"))),
    ("fix sends feedback to a pull request waiting for checks",
     facts("fix", args="rename it", latest=WAITING_WITH_PR),
     accepted("sent the feedback to run r-pr", "r-pr", SendFeedback("r-pr", "rename it"))),
    ("fix without text asks what to change",
     facts("fix", latest=DONE_WITH_PR), refused("Say what to change: `/agent-z fix <what to change>`.")),
    ("fix without a pull request is refused",
     facts("fix", args="x"), refused("There is no Agent-Z pull request waiting for feedback here.")),
    ("fix on a merged run is refused and names the run",
     facts("fix", args="x", latest=MERGED),
     refused("There is no Agent-Z pull request waiting for feedback here (run `r-old` is merged).", "r-old")),
    ("fix on a run still developing is refused",
     facts("fix", args="x", latest=DEVELOPING, live=DEVELOPING),
     refused("There is no Agent-Z pull request waiting for feedback here (run `r-live` is developing).", "r-live")),
    # unknown
    ("unknown command lists the commands",
     facts("unknown"),
     refused("Unknown command. Use one of: `/agent-z run`, `/agent-z cancel`, `/agent-z retry`, "
             "`/agent-z status`, `/agent-z plan`, `/agent-z fix`.")),
]


@pytest.mark.parametrize(("case", "given", "expected"), ROWS, ids=[row[0] for row in ROWS])
def test_command_decision(case: str, given: CommandFacts, expected: CommandDecision) -> None:
    assert decide_command(given) == expected, case


def test_only_refusals_are_throttled() -> None:
    throttled = [row[0] for row in ROWS if decide_command(row[1]).throttled]
    assert throttled
    assert all(row[1].permission in (OUTSIDER, UNTRUSTED_BOT) for row in ROWS if row[0] in throttled)


def test_no_effect_without_permission() -> None:
    for case, given, _ in ROWS:
        if not given.permission.allowed or not given.first_time:
            assert decide_command(given).effects == (), case


ANSWERED = [
    ("run answered by a queued run is dropped", "run", QUEUED, ALREADY_ANSWERED),
    ("plan answered by a finished run is dropped", "plan", MERGED, ALREADY_ANSWERED),
    ("run answered by a plan awaiting approval approves it", "run", AWAITING, None),
    ("plan answered by a plan awaiting approval is dropped", "plan", AWAITING, ALREADY_ANSWERED),
    ("run nobody answered goes on", "run", None, None),
    ("cancel is never an answered request", "cancel", QUEUED, None),
    ("retry is never an answered request", "retry", MERGED, None),
]


@pytest.mark.parametrize(("case", "name", "answered", "expected"), ANSWERED, ids=[row[0] for row in ANSWERED])
def test_answered_request(case: str, name: str, answered: RunFacts | None, expected: str | None) -> None:
    assert answered_request(Command(name), answered) == expected, case


OTHER_EDITOR = "comment edited by someone other than its author"
SAME = "the edit kept the same command"

EDITS = [
    ("edit by the author adding a command runs it", "alice", "alice", "thanks", None),
    ("edit of a comment that had no body before runs it", "alice", "Alice", None, None),
    ("edit by someone else never runs", "mallory", "alice", "thanks", OTHER_EDITOR),
    ("edit without a sender never runs", "", "alice", "thanks", OTHER_EDITOR),
    ("edit that keeps the command repeats nothing", "alice", "alice", "/agent-z  RUN", SAME),
    ("edit that changes the command runs the new one", "alice", "alice", "/agent-z plan", None),
    ("a command in a code block before the edit does not count", "alice", "alice", "`/agent-z run`", None),
]


@pytest.mark.parametrize(("case", "sender", "author", "previous", "expected"), EDITS, ids=[row[0] for row in EDITS])
def test_edit_skip_reason(case: str, sender: str, author: str, previous: str | None, expected: str | None) -> None:
    assert edit_skip_reason(sender=sender, author=author, previous_body=previous, command=Command("run")) == expected


CLOSED_TO_LABELS = [
    ("open issue takes labels", "open", False, None),
    ("closed issue does not", "closed", False, "issue is not open"),
    ("a pull request does not", "open", True, "pull request"),
    ("a closed pull request is reported as not open", "closed", True, "issue is not open"),
]


@pytest.mark.parametrize(("case", "state", "is_pull", "expected"), CLOSED_TO_LABELS,
                         ids=[row[0] for row in CLOSED_TO_LABELS])
def test_closed_to_labels(case: str, state: str, is_pull: bool, expected: str | None) -> None:
    assert closed_to_labels(issue_state=state, is_pull_request=is_pull) == expected, case


LABELS = [
    ("a maintainer's trigger label enqueues a run", MAINTAINER, None,
     LabelDecision(enqueue=Enqueue("full", "label 'agent-z' added by @alice", "issue"))),
    ("an outsider's trigger label enqueues nothing", OUTSIDER, None,
     LabelDecision(refusal="@alice may not steer Agent-Z: no write access")),
    ("an unverifiable sender enqueues nothing", LOOKUP_FAILED, None,
     LabelDecision(refusal="@alice may not steer Agent-Z: permission lookup failed")),
    ("a label a run already answered enqueues nothing", MAINTAINER, QUEUED,
     LabelDecision(refusal=ALREADY_ANSWERED, run_id="r-live")),
    ("a late label after a finished run enqueues nothing", MAINTAINER, MERGED,
     LabelDecision(refusal=ALREADY_ANSWERED, run_id="r-old")),
]


@pytest.mark.parametrize(("case", "permission", "answered", "expected"), LABELS, ids=[row[0] for row in LABELS])
def test_trigger_label_decision(case: str, permission: PermissionFacts, answered: RunFacts | None,
                                expected: LabelDecision) -> None:
    assert decide_trigger_label(label="agent-z", sender="alice", permission=permission, answered=answered) == expected
