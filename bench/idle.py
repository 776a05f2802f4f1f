"""GitHub requests while the whole service is idle: only conditional GETs answered 304 are allowed.

``python -m bench idle`` starts every role against fakehub with a short resync interval
(``RESYNC_INTERVAL_SECONDS=5``, 2 when quick, so the window holds several resyncs), lets the demo
issues settle (delivered, cleaned up, the rest judged), lets one resync catch up with
the changes made while settling, zeroes fakehub's counters and waits. Quick: one issue
with trivial CI and a 7 s window; full: the whole demo scenario and a 5 minute window.
Prints
``idle: seconds=<n> requests=<n> not_modified=<n> get=<n> post=<n> patch=<n> put=<n> delete=<n>``
where ``requests`` counts every request not answered 304 (the target is 0) and the
per-method figures count all requests, 304s included.
"""

from __future__ import annotations

import asyncio

from bench.common import BenchOptions, Figures
from bench.writes_per_pr import quiet_logs

RESYNC_SECONDS = 5
QUICK_RESYNC_SECONDS = 2


async def measure(window: float, *, quick: bool) -> Figures:
    """Settle the demo, then count requests during ``window`` seconds of idling."""
    from agentz_app.demo.runner import Demo, DemoOptions

    resync = QUICK_RESYNC_SECONDS if quick else RESYNC_SECONDS
    demo_options = DemoOptions(timeout=150.0, env={"RESYNC_INTERVAL_SECONDS": str(resync)},
                               issues=(1,) if quick else None, ci_command="true" if quick else None)
    async with Demo(demo_options) as demo:
        assert demo.hub is not None
        await demo.seed()
        if not await demo.wait_delivered():
            raise RuntimeError("the demo did not deliver its issues; see the role logs")
        if not await demo.settle(quiet=2.0):
            raise RuntimeError("the demo did not settle after delivering")
        # One resync still sees what changed while settling (the last deliveries, cleaned-up labels).
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


def scenario(options: BenchOptions) -> Figures:
    """The benchmark entry point."""
    quiet_logs()
    return asyncio.run(measure(7.0 if options.quick else 300.0, quick=options.quick))
