"""Control-plane time per run: enqueue to ``done`` minus the agent's and CI's own time.

``python -m bench overhead`` runs the demo scenario three times (every role a
supervised child process, fakehub, real git) with the scripted agent, whose steps
return at once, and a trivial CI command (``true``). For every delivered run it takes
the wall time from the ``enqueued`` event to the ``done`` transition and subtracts the
time spent inside agent calls (``agent_call`` events) and inside CI jobs of the run's
branch (timed in fakehub from job start to finish). What remains is queueing,
claiming, git, GitHub requests and webhook round trips. ``--quick`` reads the runs of
the demo shared with ``writes-per-pr`` and ``idle`` (:mod:`bench.loop`), whose CI is the
demo's real test suite. Runs with a CI-fix round go through the loop twice and are
left out. Prints ``overhead: overhead_s_per_run=<x> max_s=<x> runs=<n> wall_s_per_run=<x>
agent_s_per_run=<x> ci_s_per_run=<x> submit_s_per_run=<x>`` (the last is the part of the
overhead spent submitting: commit, push, PR, check runs, status comment).
"""

from __future__ import annotations

import asyncio

from bench.common import BenchOptions, Figures
from bench.loop import DEMO_TIMEOUT, CiTimer, RunTimes, overhead_figures, quick_figures, quiet_logs, run_times

DEMOS = 3


async def measure_once() -> list[RunTimes]:
    """One demo with instant agent steps and trivial CI; the time split of each delivered run."""
    from agentz_app.demo.runner import Demo, DemoOptions

    async with Demo(DemoOptions(timeout=DEMO_TIMEOUT, ci_command="true")) as demo:
        timer = CiTimer(demo)
        await demo.seed()
        if not await demo.wait_delivered():
            raise RuntimeError("the demo did not deliver its issues; see the role logs")
        return run_times(demo, timer)


def scenario(options: BenchOptions) -> Figures:
    """The benchmark entry point."""
    if options.quick:
        return quick_figures()["overhead"]
    quiet_logs()
    times: list[RunTimes] = []
    for _ in range(DEMOS):
        times += asyncio.run(measure_once())
    return overhead_figures(times)
