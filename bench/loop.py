"""What the whole-loop scenarios (writes-per-pr, overhead, idle) measure on a running demo.

Each scenario runs its own demo in a full run. ``--quick`` measures all three on one
shared demo (:func:`quick_figures`, computed once per process): the demo scenario with a
2 s resync interval is delivered and settled, its writes and per-run times are read,
then the service idles for a short window. Starting the six role processes once
instead of three times keeps the CI smoke run short.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from bench.common import Figures

if TYPE_CHECKING:
    from agentz_app.demo.runner import Demo

DEMO_TIMEOUT = 150.0
QUICK_RESYNC_SECONDS = 2
QUICK_IDLE_WINDOW = 5.0


def quiet_logs() -> None:
    """Keep the supervisor's log lines off stdout, where the figures go."""
    from agentz_app.logs import configure_logging

    configure_logging("json", "warning", stream=sys.stderr)


async def deliver(demo: Demo) -> None:
    """Seed the demo, wait until its deliverable issues are done and everything has settled."""
    await demo.seed()
    if not await demo.wait_delivered():
        raise RuntimeError("the demo did not deliver its issues; see the role logs")
    # Cleanup after ``done`` still edits labels and the status comment.
    if not await demo.settle(quiet=2.0):
        raise RuntimeError("the demo did not settle after delivering")


# writes-per-pr -------------------------------------------------------------------


def write_figures(demo: Demo) -> Figures:
    """Content-creating requests per delivered PR, by method, plus duplicate PRs and comments."""
    assert demo.hub is not None
    audit = demo.audit()
    counters = demo.hub.counters()
    by_method = counters["requests"]
    prs = sum(len(numbers) for numbers in audit.pulls.values())
    writes = int(counters["writes"])
    figures: Figures = {"writes_per_pr": writes / prs if prs else float("nan"), "prs": prs, "writes": writes}
    methods = {method: int(by_method.get(method, 0)) for method in ("POST", "PATCH", "PUT", "DELETE")}
    token_requests = sum(methods.values()) - writes  # POSTs for installation tokens are not content
    methods["POST"] -= token_requests
    figures.update({method.lower(): count for method, count in methods.items()})
    figures["duplicate_prs"] = audit.duplicate_pulls()
    figures["duplicate_comments"] = audit.duplicate_comments()
    return figures


# overhead ------------------------------------------------------------------------


@dataclass(frozen=True)
class RunTimes:
    """Where one run's wall time went, in seconds."""

    wall: float
    agent: float
    ci: float
    submit: float  # submitting → waiting_checks: commit, push, PR, check runs, status comment
    fix_rounds: int
    quiet: float = 0.0  # CI_QUIET_SECONDS per CI round: a configured wait for late CI, not overhead

    @property
    def overhead(self) -> float:
        return self.wall - self.agent - self.ci - self.quiet


class CiTimer:
    """Times fakehub's CI jobs by branch (install before seeding)."""

    def __init__(self, demo: Demo) -> None:
        from agentz_app.fakehub.ci import CiJob, CiOutcome

        assert demo.hub is not None
        self.spans: dict[str, list[tuple[float, float]]] = {}
        started: dict[int, float] = {}
        ci = demo.hub.ci
        on_start, on_finish = ci.on_start, ci.on_finish

        async def timed_start(job: CiJob) -> None:
            started[job.run_id] = time.time()
            await on_start(job)

        async def timed_finish(job: CiJob, outcome: CiOutcome) -> None:
            self.spans.setdefault(job.branch, []).append((started.get(job.run_id, time.time()), time.time()))
            await on_finish(job, outcome)

        ci.on_start, ci.on_finish = timed_start, timed_finish

    def seconds(self, branch: str) -> float:
        """Total CI time spent on ``branch``."""
        return sum(end - begin for begin, end in self.spans.get(branch, []))


def run_times(demo: Demo, timer: CiTimer) -> list[RunTimes]:
    """The time split of every delivered run: enqueued → done, minus agent calls and CI jobs."""
    from agentz_app.store.models import Event

    assert demo.db is not None
    runs = [run for number, run in demo.runs().items() if number in demo.options.deliverable()]
    quiet = float(demo.env.get("CI_QUIET_SECONDS", "0"))
    times = []
    with demo.db.read() as session:
        for run in runs:
            events = list(session.scalars(select(Event).where(Event.run_id == run.id).order_by(Event.id)))
            enqueued = next(e.created_at for e in events if e.kind == "enqueued")
            done = next(e.created_at for e in events if e.to_status == "done")
            agent = sum(float(e.payload.get("duration", 0.0)) for e in events if e.kind == "agent_call")
            submit = sum(_span(events, "submitting", "waiting_checks"))
            times.append(RunTimes(wall=done - enqueued, agent=agent, ci=timer.seconds(run.branch or ""),
                                  submit=submit, fix_rounds=run.ci_round, quiet=quiet * (run.ci_round + 1)))
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


def overhead_figures(times: Sequence[RunTimes]) -> Figures:
    """Per-run averages of runs without a CI-fix round (a fix round is a second pass through the loop)."""
    single = [t for t in times if t.fix_rounds == 0]
    if not single:
        raise RuntimeError("no delivered run went through the loop exactly once")
    count = len(single)
    return {
        "overhead_s_per_run": sum(t.overhead for t in single) / count,
        "max_s": max(t.overhead for t in single),
        "runs": count,
        "wall_s_per_run": sum(t.wall for t in single) / count,
        "agent_s_per_run": sum(t.agent for t in single) / count,
        "ci_s_per_run": sum(t.ci for t in single) / count,
        "ci_quiet_s_per_run": sum(t.quiet for t in single) / count,
        "submit_s_per_run": sum(t.submit for t in single) / count,
    }


# idle ----------------------------------------------------------------------------


async def idle_figures(demo: Demo, *, window: float, resync: float) -> Figures:
    """Requests made during ``window`` seconds of idling, after one resync catches up with settling."""
    assert demo.hub is not None
    await asyncio.sleep(resync + 1)
    demo.hub.reset_counters()
    await asyncio.sleep(window)
    counters = demo.hub.counters()
    by_method = counters["requests"]
    figures: Figures = {"seconds": int(window), "requests": int(counters["total"] - counters["not_modified"]),
                        "not_modified": int(counters["not_modified"])}
    for method in ("GET", "POST", "PATCH", "PUT", "DELETE"):
        figures[method.lower()] = int(by_method.get(method, 0))
    return figures


# --quick: one demo for all three ---------------------------------------------------


async def _measure_quick() -> dict[str, Figures]:
    from agentz_app.demo.runner import Demo, DemoOptions
    from bench.writes_per_pr import cancelled_run_figures, demo_script

    options = DemoOptions(timeout=DEMO_TIMEOUT, env={"RESYNC_INTERVAL_SECONDS": str(QUICK_RESYNC_SECONDS)},
                          script=demo_script())
    async with Demo(options) as demo:
        timer = CiTimer(demo)
        await deliver(demo)
        written, times = await asyncio.to_thread(lambda: (write_figures(demo), run_times(demo, timer)))
        figures = {"writes-per-pr": written, "overhead": overhead_figures(times)}
        figures["writes-per-pr"].update(await cancelled_run_figures(demo))
        figures["idle"] = await idle_figures(demo, window=QUICK_IDLE_WINDOW, resync=QUICK_RESYNC_SECONDS)
    return figures


@functools.cache
def quick_figures() -> dict[str, Figures]:
    """writes-per-pr, overhead and idle figures from one shared demo, measured on first use."""
    quiet_logs()
    return asyncio.run(_measure_quick())
