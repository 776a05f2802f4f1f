"""The CI verdict of a head SHA, decided from typed signals.

Check runs are keyed by id and commit statuses by context, so two workflows with a
``test`` job, or a push- and a pull_request-triggered run, are separate signals; only a
re-run of the same job (a newer check run with the same name in the same suite) replaces
an older attempt. A verdict is reached only when every check run and status is complete,
every other App's check suite that has (or may still get) check runs is complete, and
nothing changed for ``quiet_seconds``: GitHub creates suites and later jobs' check runs
after the first ones complete, and webhooks arrive in any order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

FAILED_CONCLUSIONS = frozenset({"failure", "timed_out", "cancelled", "action_required", "startup_failure", "stale"})
OWN_CHECK_PREFIX = "Agent-Z / "

Outcome = Literal["none", "pending", "success", "failure"]


@dataclass(frozen=True)
class CheckSignal:
    """One check run (``key`` = its id) or commit status (``key`` = its context) as last seen."""

    source: Literal["check_run", "status"]
    key: str
    name: str
    status: str  # queued | in_progress | completed (a status: pending → in_progress)
    conclusion: str | None
    app_slug: str | None = None
    suite_id: int | None = None
    summary: str = ""
    changed_at: float = 0.0  # when we first saw this state (our clock)

    @property
    def completed(self) -> bool:
        """True once the check or status has a final state."""
        return self.status == "completed"

    @property
    def failed(self) -> bool:
        """True for a completed signal whose conclusion is a failure."""
        return self.completed and (self.conclusion or "") in FAILED_CONCLUSIONS


@dataclass(frozen=True)
class SuiteSignal:
    """One check suite of one App on the head SHA."""

    id: int
    app_slug: str | None
    status: str
    conclusion: str | None
    runs: int = 0  # GitHub's latest_check_runs_count when last seen
    first_seen_at: float = 0.0
    changed_at: float = 0.0

    @property
    def completed(self) -> bool:
        """True once every check run of the suite completed."""
        return self.status == "completed"


@dataclass(frozen=True)
class CIPolicy:
    """What the verdict depends on besides the signals."""

    own_slug: str
    quiet_seconds: float = 10.0
    grace_seconds: float = 600.0
    repo_has_ci: bool = False  # the repository has reported CI (a check run or status of another App) before
    waiting_since: float = 0.0  # when the run started waiting on this head


@dataclass(frozen=True)
class Verdict:
    """The outcome for a head SHA, why, what failed, and when a pending verdict may change by itself."""

    outcome: Outcome
    reason: str
    failed: tuple[CheckSignal, ...] = ()
    failed_suites: tuple[SuiteSignal, ...] = ()
    recheck_at: float | None = None

    @property
    def decided(self) -> bool:
        """True for success and failure."""
        return self.outcome in ("success", "failure")


def is_own(signal: CheckSignal | SuiteSignal, own_slug: str) -> bool:
    """True for Agent-Z's own check runs and suites (they never gate a run)."""
    if signal.app_slug:
        return signal.app_slug == own_slug
    return isinstance(signal, CheckSignal) and signal.name.startswith(OWN_CHECK_PREFIX)


def _attempt(signal: CheckSignal) -> tuple[int, float]:
    """Order attempts of one job: a re-run has a larger check-run id."""
    return (int(signal.key) if signal.key.isdigit() else -1, signal.changed_at)


def latest_attempts(signals: Sequence[CheckSignal]) -> list[CheckSignal]:
    """Each job's newest attempt (check runs per suite and name) and each status context once."""
    latest: dict[tuple[str, str, str], CheckSignal] = {}
    for signal in signals:
        if signal.source == "status":
            group = ("status", signal.key, "")
        else:
            scope = f"suite:{signal.suite_id}" if signal.suite_id is not None else f"app:{signal.app_slug}"
            group = ("check_run", scope, signal.name)
        held = latest.get(group)
        if held is None or _attempt(signal) > _attempt(held):
            latest[group] = signal
    return list(latest.values())


def _names(items: Sequence[CheckSignal]) -> str:
    shown = ", ".join(sorted({s.name for s in items})[:5])
    return shown + (", …" if len({s.name for s in items}) > 5 else "")


def decide_ci(signals: Sequence[CheckSignal], suites: Sequence[SuiteSignal], now: float, *,
              policy: CIPolicy) -> Verdict:
    """The CI verdict over everything that is not Agent-Z's own.

    A suite still open blocks when it has check runs, or when it is empty but was first
    seen less than ``quiet_seconds`` ago (a workflow whose jobs are not created yet); an
    empty suite older than that belongs to an App that never reports (GitHub leaves such
    suites queued forever). A completed suite that failed without any check run we know
    (a workflow that could not start) is a failure.
    """
    current = latest_attempts([s for s in signals if not is_own(s, policy.own_slug)])
    others = [s for s in suites if not is_own(s, policy.own_slug)]
    with_runs = {s.suite_id for s in current if s.suite_id is not None}
    blocking = [s for s in others if not s.completed
                and (s.runs > 0 or s.id in with_runs or now - s.first_seen_at < policy.quiet_seconds)]
    pending = [s for s in current if not s.completed]
    if pending or blocking:
        reason = f"waiting for {_names(pending)}" if pending else f"waiting for {len(blocking)} check suite(s)"
        young = [s.first_seen_at + policy.quiet_seconds for s in blocking if s.runs == 0 and s.id not in with_runs]
        return Verdict("pending", reason, recheck_at=min(young) if young and not pending else None)
    failed_suites = tuple(s for s in others if s.completed and (s.conclusion or "") in FAILED_CONCLUSIONS
                          and s.id not in with_runs)
    if not current and not failed_suites:
        return _no_ci(now, policy)
    last_change = max([s.changed_at for s in current] + [s.changed_at for s in others])
    if now - last_change < policy.quiet_seconds:
        return Verdict("pending", f"quiet for {policy.quiet_seconds:g} s before deciding",
                       recheck_at=last_change + policy.quiet_seconds)
    failed = tuple(sorted((s for s in current if s.failed), key=lambda s: (s.name, s.key)))
    if failed or failed_suites:
        names = _names(failed) if failed else f"{len(failed_suites)} check suite(s)"
        return Verdict("failure", f"checks failed: {names}", failed=failed, failed_suites=failed_suites)
    return Verdict("success", "checks passed")


def _no_ci(now: float, policy: CIPolicy) -> Verdict:
    if policy.repo_has_ci:
        return Verdict("none", "no CI result yet (the repository has CI)")
    if policy.grace_seconds <= 0:
        return Verdict("none", "no CI result yet")
    due = policy.waiting_since + policy.grace_seconds
    if now >= due:
        return Verdict("success", f"no CI result within {policy.grace_seconds:g} s")
    return Verdict("none", "no CI result yet", recheck_at=due)
