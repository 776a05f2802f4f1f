"""Content-creating GitHub requests per delivered pull request, in the demo scenario.

``python -m bench writes-per-pr`` runs ``agentz demo``'s scenario (fakehub in this
process, every role as a supervised child process, real git, the scripted agent),
waits until the deliverable issues are done and everything has settled (cleanup after
``done`` still edits labels and the status comment), then reads fakehub's counters.
Seeding the repository and issues happens inside fakehub, as a person would, and is
not counted; neither are installation-token requests. ``--quick`` reads the same
figures from the demo shared with ``overhead`` and ``idle`` (:mod:`bench.loop`). Prints
``writes-per-pr: writes_per_pr=<x> prs=<n> writes=<n> post=<n> patch=<n> put=<n> delete=<n>``.
"""

from __future__ import annotations

import asyncio

from bench.common import BenchOptions, Figures
from bench.loop import DEMO_TIMEOUT, deliver, quick_figures, quiet_logs, write_figures


async def measure() -> Figures:
    """Run the demo scenario once and count writes per delivered PR."""
    from agentz_app.demo.runner import Demo, DemoOptions

    async with Demo(DemoOptions(timeout=DEMO_TIMEOUT)) as demo:
        await deliver(demo)
        return write_figures(demo)


def scenario(options: BenchOptions) -> Figures:
    """The benchmark entry point."""
    if options.quick:
        return quick_figures()["writes-per-pr"]
    quiet_logs()
    return asyncio.run(measure())
