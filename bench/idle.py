"""GitHub requests while the whole service is idle: only conditional GETs answered 304 are allowed.

``python -m bench idle`` starts every role against fakehub with a short resync interval
(``RESYNC_INTERVAL_SECONDS=5``) so the window holds many resyncs, lets the demo issues
settle (delivered, cleaned up, the rest judged), lets one resync catch up with the
changes made while settling, zeroes fakehub's counters and waits 5 minutes. ``--quick``
idles 5 s with a 2 s resync interval on the demo shared with ``writes-per-pr`` and
``overhead`` (:mod:`bench.loop`). Prints
``idle: seconds=<n> requests=<n> not_modified=<n> get=<n> post=<n> patch=<n> put=<n> delete=<n>``
where ``requests`` counts every request not answered 304 (the target is 0) and the
per-method figures count all requests, 304s included.
"""

from __future__ import annotations

import asyncio

from bench.common import BenchOptions, Figures
from bench.loop import DEMO_TIMEOUT, deliver, idle_figures, quick_figures, quiet_logs

RESYNC_SECONDS = 5
WINDOW_SECONDS = 300.0


async def measure() -> Figures:
    """Settle the demo, then count requests during the idle window."""
    from agentz_app.demo.runner import Demo, DemoOptions

    async with Demo(DemoOptions(timeout=DEMO_TIMEOUT, env={"RESYNC_INTERVAL_SECONDS": str(RESYNC_SECONDS)})) as demo:
        await deliver(demo)
        return await idle_figures(demo, window=WINDOW_SECONDS, resync=RESYNC_SECONDS)


def scenario(options: BenchOptions) -> Figures:
    """The benchmark entry point."""
    if options.quick:
        return quick_figures()["idle"]
    quiet_logs()
    return asyncio.run(measure())
