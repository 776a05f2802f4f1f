"""Act on the runs webhooks woke: settle CI, end a run whose pull request closed, ask for a fix,
re-run a stage, clean up a stopped run, show a note.

Webhook handlers only record what happened (:mod:`agentz_app.store.wakeups`); a worker
claims due wake-ups under a lease, acts with its own dependencies, and removes them. A
wake-up whose action failed on GitHub is retried with a back-off; one that keeps failing
is dropped with an event (CI is settled later by the idle sweep anyway). Every action is
fenced like other run writes (``expected_attempt``), so a late or repeated wake-up moves
nothing that changed meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from agentz_app.domain import states
from agentz_app.domain.states import Status
from agentz_app.errors import AgentZError, IllegalTransition, LeaseLost, NotFound
from agentz_app.logs import get_logger
from agentz_app.store.models import Run, now
from agentz_app.store.runs import RunReads
from agentz_app.store.wakeups import (
    Wakeup,
    claim_wakeups,
    drop_wakeup,
    finish_wakeup,
    has_due_wakeups,
    retry_wakeup,
)
from workers.coordinator import Coordinator, status_view
from workers.pipeline import PipelineDeps, finish_run, request_fix, settle_ci

WAKE_POLL_SECONDS = 0.5  # how often a worker looks for wake-ups (a cheap read)
MAX_WAKE_ATTEMPTS = 8
MAX_RETRY_SECONDS = 300.0

log = get_logger("agentz.wakeups")


def retry_delay(attempts: int) -> float:
    """Seconds before a failed wake-up is tried again: doubling, at most five minutes."""
    return min(MAX_RETRY_SECONDS, 2.0 ** attempts)


def _last_review_summary(reads: RunReads, run_id: str) -> str | None:
    for event in reversed(reads.events(run_id)):
        review = event.payload.get("review") if event.kind == "review" else None
        if isinstance(review, Mapping) and isinstance(review.get("summary"), str):
            return str(review["summary"])
    return None


async def _settle(deps: PipelineDeps, run: Run, _: Mapping[str, Any]) -> None:
    if run.status in (Status.WAITING_CHECKS, Status.DONE):
        await settle_ci(deps, await deps.github(run), run)


async def _pull_closed(deps: PipelineDeps, run: Run, payload: Mapping[str, Any]) -> None:
    merged = bool(payload.get("merged"))
    target = Status.MERGED if merged else Status.CANCELLED
    gh = await deps.github(run)  # before the change: a retry after a failure here still cleans up
    if run.status != target:
        if run.status in (Status.MERGED, Status.CANCELLED) or not states.can_transition(run.status, target):
            return
        reason = "pull request merged" if merged else "pull request closed without merging"
        run = await deps.db.run(deps.queue.moves.set_status, run.id, target, reason=reason, actor="github",
                                expected_attempt=run.attempt)
    await finish_run(deps, gh, run)


async def _feedback(deps: PipelineDeps, run: Run, payload: Mapping[str, Any]) -> None:
    feedback = payload.get("feedback")
    if run.status not in (Status.WAITING_CHECKS, Status.DONE) or not isinstance(feedback, Mapping):
        await deps.db.run(deps.queue.moves.add_event, run.id, "feedback_not_used", status=str(run.status))
        return
    await request_fix(deps, await deps.github(run), run, dict(feedback),
                      reason=str(payload.get("reason") or "changes requested"))


async def _rerun(deps: PipelineDeps, run: Run, payload: Mapping[str, Any]) -> None:
    actor = str(payload.get("actor") or "github")
    if run.status in states.RETRYABLE:
        await deps.db.run(deps.queue.moves.resume, run.id, reason=str(payload.get("reason") or "re-run requested"),
                          actor=actor)
    elif run.status == Status.WAITING_CHECKS:
        await settle_ci(deps, await deps.github(run), run)
    else:
        await deps.db.run(deps.queue.moves.add_event, run.id, "retry_ignored", status=str(run.status), actor=actor)


async def _finish(deps: PipelineDeps, run: Run, _: Mapping[str, Any]) -> None:
    if run.status in states.TERMINAL:
        await finish_run(deps, await deps.github(run), run)


async def _show_notes(deps: PipelineDeps, run: Run, _: Mapping[str, Any]) -> None:
    if run.status not in (Status.WAITING_CHECKS, Status.DONE):
        return  # a working run shows its notes at its next status update
    view = status_view(run, review_summary=await deps.db.run(_last_review_summary, deps.queue.reads, run.id))
    await Coordinator(await deps.github(run), deps.db, deps.settings).status_comment(run, view)


Action = Callable[[PipelineDeps, Run, Mapping[str, Any]], Any]
ACTIONS: dict[str, Action] = {
    "ci": _settle,
    "pull_closed": _pull_closed,
    "feedback": _feedback,
    "rerun": _rerun,
    "finish": _finish,
    "notes": _show_notes,
}


async def act(deps: PipelineDeps, wakeup: Wakeup) -> None:
    """Carry out one claimed wake-up and remove it; on a GitHub or store error, leave it for a retry."""
    action = ACTIONS.get(wakeup.reason)
    try:
        run = await deps.db.run(deps.queue.reads.get, wakeup.run_id)
    except NotFound:
        run = None
    if action is None or run is None:
        log.warning("wake-up dropped", run_id=wakeup.run_id, reason=wakeup.reason)
        await deps.db.run(drop_wakeup, deps.db, wakeup)
        return
    with structlog.contextvars.bound_contextvars(run_id=run.id):
        try:
            await action(deps, run, wakeup.payload)
        except (LeaseLost, IllegalTransition) as exc:
            log.info("wake-up ignored", reason=wakeup.reason, detail=str(exc))  # the run moved meanwhile
        except (AgentZError, OSError) as exc:
            if wakeup.attempts >= MAX_WAKE_ATTEMPTS:
                log.error("wake-up dropped after repeated failures", reason=wakeup.reason, error=str(exc))
                await deps.db.run(deps.queue.moves.add_event, run.id, "wakeup_dropped", reason=wakeup.reason,
                                  error=str(exc)[:500])
                await deps.db.run(drop_wakeup, deps.db, wakeup)
            else:
                log.warning("wake-up failed; will retry", reason=wakeup.reason, error=str(exc),
                            retry_in=retry_delay(wakeup.attempts))
                await deps.db.run(retry_wakeup, deps.db, wakeup, at=now() + retry_delay(wakeup.attempts))
            return
        await deps.db.run(finish_wakeup, deps.db, wakeup)


async def act_on_wakeups(deps: PipelineDeps, owner: str, *, limit: int = 10,
                         clock: Callable[[], float] = now) -> int:
    """Claim up to ``limit`` due wake-ups for ``owner`` and act on each; returns how many were claimed."""
    claimed = await deps.db.run(claim_wakeups, deps.db, owner, at=clock(), limit=limit)
    for wakeup in claimed:
        await act(deps, wakeup)
    return len(claimed)


async def wake_forever(deps: PipelineDeps, owner: str, stop: asyncio.Event, *,
                       poll_seconds: float = WAKE_POLL_SECONDS) -> None:
    """Act on wake-ups as they come until ``stop`` is set, alongside the process's stage work.

    Idle, this is one cheap read per ``poll_seconds`` and no GitHub request.
    """
    while not stop.is_set():
        try:
            if await deps.db.run(has_due_wakeups, deps.db, at=now()):
                while await act_on_wakeups(deps, owner) and not stop.is_set():
                    pass
        except Exception as exc:  # noqa: BLE001 - a worker loop: any failure is logged, the next poll goes on
            log.error("acting on wake-ups failed", error=str(exc))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), poll_seconds)
