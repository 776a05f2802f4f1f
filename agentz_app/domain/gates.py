"""Deterministic gates: which issues may be scheduled at all, each with a recorded reason.

Pure functions over snapshot dataclasses — no database, no GitHub. The service layer
builds :class:`IssueView`, :class:`PullView` and :class:`GateContext` from the store
and records every :class:`Verdict` on the issue row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from agentz_app.domain.dependencies import IssueRef, closing_references, parse_dependencies

# Gate names, in the order they are checked; a verdict names the first that failed.
PULL_REQUEST = "pull_request"
CLOSED = "closed"
ACTIVE_RUN = "active_run"
PREVIOUS_RUN = "previous_run"
DUPLICATE = "duplicate"
ASSIGNED = "assigned"
BLOCK_LABEL = "block_label"
SKIP_LABEL = "skip_label"
NOT_ELIGIBLE = "not_eligible"
UNTRUSTED_AUTHOR = "untrusted_author"
OPEN_PR = "open_pr"
DEPENDENCY = "dependency"
STALE = "stale"
PASSED = "passed"

# A run that ended like this is not rescheduled automatically: a person decides.
STOPPED_STATUSES = frozenset({"cancelled", "failed", "needs_human", "done", "merged"})


@dataclass(frozen=True)
class IssueView:
    """What the gates need to know about one issue (from the ``issues`` snapshot)."""

    repo: str
    number: int
    title: str = ""
    body: str = ""
    state: str = "open"
    state_reason: str | None = None
    labels: tuple[str, ...] = ()
    assignees: tuple[str, ...] = ()
    is_pull_request: bool = False
    updated_at: str = ""
    comments: tuple[str, ...] = ()
    author: str = ""
    author_trusted: bool = False  # the author passes the permission rule
    trusted_labels: tuple[str, ...] = ()  # labels added by someone who passes it
    author_association: str | None = None  # GitHub's OWNER, MEMBER … NONE; None when unknown

    @property
    def ref(self) -> IssueRef:
        return IssueRef(self.repo, self.number)

    def has_label(self, names: Iterable[str]) -> str | None:
        """The first of ``names`` carried by the issue (labels compare case-insensitively)."""
        own = {label.lower() for label in self.labels}
        return next((name for name in names if name.lower() in own), None)


@dataclass(frozen=True)
class PullView:
    """What the gates need to know about one pull request (from the ``pulls`` snapshot)."""

    repo: str
    number: int
    state: str = "open"
    title: str = ""
    body: str = ""
    head_ref: str = ""
    linked_issues: tuple[int, ...] = ()

    @cached_property
    def closes(self) -> frozenset[IssueRef]:
        """Issues the body closes with one of GitHub's keywords (parsed once per view)."""
        return frozenset(closing_references(self.body, self.repo))

    def references(self, issue: IssueRef) -> bool:
        """True when the PR links ``issue`` with a closing keyword; a plain mention does not count."""
        if issue.repo == self.repo and issue.number in self.linked_issues:
            return True
        return issue in self.closes


@dataclass(frozen=True)
class GateContext:
    """Everything outside the issue that the gates consult."""

    eligible_labels: tuple[str, ...] = ()
    block_labels: tuple[str, ...] = ("blocked",)
    skip_labels: tuple[str, ...] = ("ongoing",)
    trigger_label: str = "agent-z"
    live_runs: Mapping[IssueRef, str] = field(default_factory=dict)
    last_runs: Mapping[IssueRef, str] = field(default_factory=dict)
    dependency_states: Mapping[IssueRef, str] = field(default_factory=dict)
    dependency_errors: Mapping[IssueRef, str] = field(default_factory=dict)  # why GitHub would not tell
    open_pulls: Sequence[PullView] = ()
    snapshot_fresh: bool = True
    trusted_only: bool = True  # SCHEDULER_TRUST=maintainers

    @classmethod
    def from_settings(cls, settings: Any, **values: Any) -> GateContext:
        """A context using the label settings of a :class:`~agentz_app.config.Settings`."""
        return cls(
            eligible_labels=tuple(settings.scheduler_eligible_labels),
            block_labels=tuple(settings.scheduler_block_labels),
            skip_labels=tuple(settings.skip_labels),
            trigger_label=settings.trigger_label,
            trusted_only=settings.scheduler_trust == "maintainers",
            **values,
        )


@dataclass(frozen=True)
class Verdict:
    """The outcome of the gates for one issue."""

    passed: bool
    gate: str
    reason: str

    @property
    def label(self) -> str:
        """The value stored in ``issues.verdict`` for a failed gate."""
        return "candidate" if self.passed else f"skipped:{self.gate}"


def _fail(gate: str, reason: str) -> Verdict:
    return Verdict(False, gate, reason)


UNKNOWN_STATE = "state unknown"


def check_dependencies(issue: IssueView, states: Mapping[IssueRef, str],
                       errors: Mapping[IssueRef, str] | None = None) -> Verdict | None:
    """A failing verdict while any declared prerequisite is open, unreadable or of unknown state."""
    waiting: list[str] = []
    for ref in parse_dependencies([issue.body, *issue.comments], issue.repo):
        if ref == issue.ref:
            continue
        state = states.get(ref)
        if state is None:
            error = (errors or {}).get(ref)
            waiting.append(f"{ref} (cannot be read: {error})" if error else f"{ref} ({UNKNOWN_STATE})")
        elif state != "closed":
            waiting.append(f"{ref} (open)")
    if waiting:
        return _fail(DEPENDENCY, "blocked by " + ", ".join(waiting))
    return None


def check_trust(issue: IssueView, ctx: GateContext, *, explicit: bool = False) -> Verdict | None:
    """A failing verdict when nobody who may steer stands behind the issue.

    It passes when trust is not required, when a maintainer asked for it (``explicit``),
    when its author may steer, or when someone who may steer added one of its current
    eligible labels or the trigger label.
    """
    if not ctx.trusted_only or explicit or issue.author_trusted:
        return None
    vouching = {label.lower() for label in [*ctx.eligible_labels, ctx.trigger_label]}
    current = {label.lower() for label in issue.labels}
    if vouching & current & {label.lower() for label in issue.trusted_labels}:
        return None
    labels = ", ".join(dict.fromkeys([*ctx.eligible_labels, ctx.trigger_label]))
    who = f"@{issue.author}" if issue.author else "an unknown author"
    return _fail(UNTRUSTED_AUTHOR, f"opened by {who}, who may not steer Agent-Z; a maintainer can add "
                                   f"one of the labels {labels}")


def evaluate(issue: IssueView, ctx: GateContext, *, explicit: bool = False) -> Verdict:
    """Run every gate on one issue, in order, up to the first that fails; ``explicit`` means a maintainer asked."""
    for gate in _GATES:
        failed = gate(issue, ctx, explicit)
        if failed is not None:
            return failed
    return Verdict(True, PASSED, "passed every gate")


def _state_gate(issue: IssueView, ctx: GateContext, explicit: bool) -> Verdict | None:
    """An open issue, with no live run, no stopped last run, not a duplicate."""
    if issue.is_pull_request:
        return _fail(PULL_REQUEST, "pull requests are never candidates")
    if issue.state != "open":
        return _fail(CLOSED, f"issue is {issue.state}")
    live = ctx.live_runs.get(issue.ref)
    if live is not None:
        return _fail(ACTIVE_RUN, f"a run is already {live}")
    last = ctx.last_runs.get(issue.ref)
    if last in STOPPED_STATUSES:
        return _fail(PREVIOUS_RUN, f"the last run ended {last}; comment /agent-z retry to run it again")
    if issue.state_reason == "duplicate" or issue.has_label(["duplicate"]):
        return _fail(DUPLICATE, "marked as a duplicate")
    return None


def _label_gate(issue: IssueView, ctx: GateContext, explicit: bool) -> Verdict | None:
    """Unassigned, no block or skip label, and eligible by label unless asked for."""
    if issue.assignees:
        return _fail(ASSIGNED, "assigned to " + ", ".join(issue.assignees))
    label = issue.has_label(ctx.block_labels)
    if label:
        return _fail(BLOCK_LABEL, f"has label {label!r}")
    label = issue.has_label(ctx.skip_labels)
    if label:
        return _fail(SKIP_LABEL, f"has label {label!r}")
    labelled = explicit or issue.has_label([ctx.trigger_label]) is not None
    if ctx.eligible_labels and not labelled and not issue.has_label(ctx.eligible_labels):
        return _fail(NOT_ELIGIBLE, "lacks any of the labels " + ", ".join(ctx.eligible_labels))
    return None


def _trust_gate(issue: IssueView, ctx: GateContext, explicit: bool) -> Verdict | None:
    # A label counts as trust only when someone who may steer added it, so `explicit` is the caller's word.
    return check_trust(issue, ctx, explicit=explicit)


def _pull_gate(issue: IssueView, ctx: GateContext, explicit: bool) -> Verdict | None:
    for pull in ctx.open_pulls:
        if pull.state == "open" and pull.references(issue.ref):
            return _fail(OPEN_PR, f"open pull request #{pull.number} references it")
    return None


def _dependency_gate(issue: IssueView, ctx: GateContext, explicit: bool) -> Verdict | None:
    return check_dependencies(issue, ctx.dependency_states, ctx.dependency_errors)


def _freshness_gate(issue: IssueView, ctx: GateContext, explicit: bool) -> Verdict | None:
    return None if ctx.snapshot_fresh else _fail(STALE, "GitHub state is unavailable; not enqueuing new work")


_GATES: tuple[Callable[[IssueView, GateContext, bool], Verdict | None], ...] = (
    _state_gate, _label_gate, _trust_gate, _pull_gate, _dependency_gate, _freshness_gate,
)


def evaluate_all(
    issues: Iterable[IssueView], ctx: GateContext, *, explicit: bool = False
) -> list[tuple[IssueView, Verdict]]:
    """Evaluate many issues; a repeated issue in the input is a duplicate."""
    seen: set[IssueRef] = set()
    results: list[tuple[IssueView, Verdict]] = []
    for issue in issues:
        if issue.ref in seen:
            results.append((issue, _fail(DUPLICATE, "listed twice")))
            continue
        seen.add(issue.ref)
        results.append((issue, evaluate(issue, ctx, explicit=explicit)))
    return results
