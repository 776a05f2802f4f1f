"""Control-plane time per run: enqueue to ``done`` minus the agent's and CI's own time.

``python -m bench overhead`` runs the demo scenario (every role a supervised child
process, fakehub, real git) with the scripted agent, whose steps return at once, and
a trivial CI command (``true``). For every delivered run it takes the wall time from
the ``enqueued`` event to the ``done`` transition and subtracts the time spent inside
agent calls (``agent_call`` events) and inside CI jobs of the run's branch (timed in
fakehub from job start to finish). What remains is queueing, claiming, git, GitHub
requests (including the ≥1 s spacing between content-creating writes) and webhook
round trips. Quick: one demo (2 runs); full: 3 demos. Prints
``overhead: overhead_s_per_run=<x> max_s=<x> runs=<n> wall_s_per_run=<x> agent_s_per_run=<x> ci_s_per_run=<x>
submit_s_per_run=<x>`` (the last is the part of the overhead spent submitting: five paced writes).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from bench.common import BenchOptions, Figures
from bench.writes_per_pr import quiet_logs

_TIMEOUT = 120.0


@dataclass(frozen=True)
class RunTimes:
    """Where one run's wall time went, in seconds."""

    wall: float
    agent: float
    ci: float
    submit: float  # submitting → waiting_checks: commit, push, PR, check runs, status comment

    @property
    def overhead(self) -> float:
        return self.wall - self.agent - self.ci


async def measure_once() -> list[RunTimes]:
    """One demo with instant agent steps and trivial CI; the time split of each delivered run."""
    from agentz_app.demo.runner import Demo, DemoOptions
    from agentz_app.fakehub.ci import CiJob, CiOutcome
    from agentz_app.store.models import Event

    ci_spans: dict[str, list[tuple[float, float]]] = {}
    started: dict[int, float] = {}
    async with Demo(DemoOptions(timeout=_TIMEOUT, ci_command="true")) as demo:
        assert demo.hub is not None and demo.db is not None
        ci = demo.hub.ci
        on_start, on_finish = ci.on_start, ci.on_finish

        async def timed_start(job: CiJob) -> None:
            started[job.run_id] = time.time()
            await on_start(job)

        async def timed_finish(job: CiJob, outcome: CiOutcome) -> None:
            ci_spans.setdefault(job.branch, []).append((started.get(job.run_id, time.time()), time.time()))
            await on_finish(job, outcome)

        ci.on_start, ci.on_finish = timed_start, timed_finish
        await demo.seed()
        if not await demo.wait_delivered():
            raise RuntimeError("the demo did not deliver its issues; see the role logs")
        runs = [run for number, run in demo.runs().items() if number in demo.options.deliverable()]
        times = []
        with demo.db.read() as session:
            for run in runs:
                events = list(session.scalars(select(Event).where(Event.run_id == run.id).order_by(Event.id)))
                enqueued = next(e.created_at for e in events if e.kind == "enqueued")
                done = next(e.created_at for e in events if e.to_status == "done")
                agent = sum(float(e.payload.get("duration", 0.0)) for e in events if e.kind == "agent_call")
                ci_time = sum(end - begin for begin, end in ci_spans.get(run.branch or "", []))
                submit = sum(_span(events, "submitting", "waiting_checks"))
                times.append(RunTimes(wall=done - enqueued, agent=agent, ci=ci_time, submit=submit))
        return times


def _span(events: list[Any], start: str, end: str) -> list[float]:
    """Durations of every stay from entering ``start`` to entering ``end``."""
    spans, entered = [], None
    for event in events:
        if event.to_status == start and event.from_status != start:
            entered = event.created_at
        elif event.to_status == end and entered is not None:
            spans.append(event.created_at - entered)
            entered = None
    return spans


def scenario(options: BenchOptions) -> Figures:
    """The benchmark entry point."""
    quiet_logs()
    times: list[RunTimes] = []
    for _ in range(1 if options.quick else 3):
        times += asyncio.run(measure_once())
    count = len(times)
    return {
        "overhead_s_per_run": sum(t.overhead for t in times) / count,
        "max_s": max(t.overhead for t in times),
        "runs": count,
        "wall_s_per_run": sum(t.wall for t in times) / count,
        "agent_s_per_run": sum(t.agent for t in times) / count,
        "ci_s_per_run": sum(t.ci for t in times) / count,
        "submit_s_per_run": sum(t.submit for t in times) / count,
    }
