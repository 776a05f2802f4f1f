"""The run state machine: statuses, allowed transitions, and which need a lease."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    QUEUED = "queued"
    PLANNING = "planning"
    AWAITING_APPROVAL = "awaiting_approval"
    READY = "ready"
    DEVELOPING = "developing"
    REVIEWING = "reviewing"
    FIXING = "fixing"
    SUBMITTING = "submitting"
    WAITING_CHECKS = "waiting_checks"
    FIXING_CI = "fixing_ci"
    DONE = "done"
    MERGED = "merged"
    CANCELLED = "cancelled"
    FAILED = "failed"
    NEEDS_HUMAN = "needs_human"
    DEFERRED = "deferred"


S = Status

# Statuses in which a process is working on the run and must hold a lease.
LEASED = frozenset({S.PLANNING, S.DEVELOPING, S.REVIEWING, S.FIXING, S.SUBMITTING, S.FIXING_CI})
# Statuses a planner or worker may claim (lease owner must be empty).
CLAIMABLE_BY_PLANNER = frozenset({S.QUEUED})
CLAIMABLE_BY_WORKER = frozenset({S.READY, S.FIXING_CI})
# Final statuses. Failed and needs_human can be retried by a maintainer.
TERMINAL = frozenset({S.DONE, S.MERGED, S.CANCELLED, S.FAILED, S.NEEDS_HUMAN})
RETRYABLE = frozenset({S.FAILED, S.NEEDS_HUMAN, S.CANCELLED})
# Live = not terminal; a live run holds its issue claim.
LIVE = frozenset(Status) - TERMINAL

_STOP = {S.CANCELLED, S.FAILED, S.NEEDS_HUMAN}

TRANSITIONS: dict[Status, frozenset[Status]] = {
    S.QUEUED: frozenset({S.PLANNING, S.DEFERRED} | _STOP),
    S.DEFERRED: frozenset({S.QUEUED, S.READY} | _STOP),
    S.PLANNING: frozenset({S.READY, S.AWAITING_APPROVAL, S.QUEUED} | _STOP),
    S.AWAITING_APPROVAL: frozenset({S.READY, S.QUEUED} | _STOP),
    S.READY: frozenset({S.DEVELOPING, S.REVIEWING, S.FIXING, S.SUBMITTING, S.DEFERRED} | _STOP),
    S.DEVELOPING: frozenset({S.REVIEWING, S.SUBMITTING, S.READY, S.DEFERRED} | _STOP),
    S.REVIEWING: frozenset({S.FIXING, S.SUBMITTING, S.READY, S.DEFERRED} | _STOP),
    S.FIXING: frozenset({S.REVIEWING, S.SUBMITTING, S.READY, S.DEFERRED} | _STOP),
    S.SUBMITTING: frozenset({S.WAITING_CHECKS, S.DONE, S.READY} | _STOP),
    S.WAITING_CHECKS: frozenset({S.FIXING_CI, S.DONE, S.MERGED, S.SUBMITTING} | _STOP),
    S.FIXING_CI: frozenset({S.SUBMITTING, S.READY, S.DEFERRED} | _STOP),
    S.DONE: frozenset({S.MERGED, S.FIXING_CI, S.CANCELLED}),
    S.MERGED: frozenset(),
    S.CANCELLED: frozenset({S.QUEUED}),
    S.FAILED: frozenset({S.QUEUED, S.CANCELLED, S.MERGED}),
    S.NEEDS_HUMAN: frozenset({S.QUEUED, S.CANCELLED, S.MERGED}),
}


def can_transition(current: str, target: str) -> bool:
    """True when the state machine allows ``current -> target``."""
    return Status(target) in TRANSITIONS[Status(current)]
