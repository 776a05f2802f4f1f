"""Content-creating GitHub requests per delivered pull request and per cancelled run, in the demo scenario.

``python -m bench writes-per-pr`` runs ``agentz demo``'s scenario (fakehub in this
process, every role as a supervised child process, real git, the scripted agent),
waits until the deliverable issues are done and everything has settled (cleanup after
``done`` still edits labels and the status comment), then reads fakehub's counters.
Seeding the repository and issues happens inside fakehub, as a person would, and is
not counted; neither are installation-token requests. The demo's deliverable issues
are picked by the scheduler, not by a person, so their runs get no 👀 and ask nobody
for a review.

Then a maintainer opens one more issue, comments ``/agent-z run`` and, once GitHub
shows the run (👀 on the comment and its status comment: ``ack_s`` seconds after the
comment), ``/agent-z cancel``; the writes from the first comment until everything
settled are ``cancelled_run_writes``. ``--quick`` reads the same figures from the demo
shared with ``overhead`` and ``idle`` (:mod:`bench.loop`). Prints
``writes-per-pr: writes_per_pr=<x> prs=<n> writes=<n> post=<n> patch=<n> put=<n> delete=<n> …
cancelled_run_writes=<n> ack_s=<s>``.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from bench.common import BenchOptions, Figures
from bench.loop import DEMO_TIMEOUT, deliver, quick_figures, quiet_logs, write_figures

if TYPE_CHECKING:
    from agentz_app.demo.runner import Demo

CANCELLED_TITLE = "Add a modulo() helper"
CANCELLED_MARKER = f"{CANCELLED_TITLE}"
PLANNING_SECONDS = 30.0  # the cancelled run's Task Lead is slow, so the cancel lands while it plans
ACK_TIMEOUT = 30.0


def demo_script() -> tuple[dict[str, Any], ...]:
    """The demo's scripted agent plus a slow Task Lead for the issue that is cancelled."""
    from agentz_app.demo.scenario import ScriptBuilder

    slow_plan = {"summary": "Add calc.mod().", "steps": ["Write mod()"], "files": ["calc.py"], "modules": [],
                 "risk": "low"}
    return (*ScriptBuilder().build(),
            {"role": "task_lead", "match": CANCELLED_MARKER, "json": slow_plan, "sleep": PLANNING_SECONDS})


def _writes(demo: Demo) -> int:
    assert demo.hub is not None
    return int(demo.hub.counters()["writes"])


async def cancelled_run_figures(demo: Demo) -> Figures:
    """Writes for a run a maintainer starts and cancels by command, and how long GitHub took to show it."""
    from agentz_app.demo import scenario

    hub = demo.hub
    assert hub is not None
    issue = hub.issues.create(scenario.REPO, CANCELLED_TITLE, "Add `calc.mod(a, b)`.", user=scenario.MAINTAINER)
    number = int(issue["number"])
    if not await demo.settle(quiet=2.0):
        raise RuntimeError("the demo did not settle after the new issue")
    before = _writes(demo)
    started = time.monotonic()
    run_comment = hub.comments.create(scenario.REPO, number, "/agent-z run", user=scenario.MAINTAINER)

    def acknowledged() -> bool:
        reactions = [r for r in hub.state.data["reactions"].values() if r.get("comment_id") == run_comment["id"]]
        return bool(reactions) and any("<!-- agent-z:status" in str(c["body"])
                                       for c in hub.comments.find(scenario.REPO, number))

    if not await demo.wait_for(acknowledged, timeout=ACK_TIMEOUT):
        raise RuntimeError("GitHub did not show the triggered run")
    ack_s = time.monotonic() - started
    hub.comments.create(scenario.REPO, number, "/agent-z cancel", user=scenario.MAINTAINER)

    async def cancelled() -> bool:
        assert demo.db is not None
        run = (await demo.db.run(demo.runs)).get(number)
        bodies = [str(c["body"]) for c in hub.comments.find(scenario.REPO, number)]
        return run is not None and run.status == "cancelled" and any("🚫 Cancelled" in b for b in bodies)

    if not await demo.wait_for(cancelled, timeout=ACK_TIMEOUT) or not await demo.settle(quiet=2.0):
        raise RuntimeError("GitHub did not show the cancelled run")
    return {"cancelled_run_writes": _writes(demo) - before, "ack_s": round(ack_s, 2)}


async def measure() -> Figures:
    """Run the demo scenario once and count writes per delivered PR and per cancelled run."""
    from agentz_app.demo.runner import Demo, DemoOptions

    async with Demo(DemoOptions(timeout=DEMO_TIMEOUT, script=demo_script())) as demo:
        await deliver(demo)
        figures = write_figures(demo)
        figures.update(await cancelled_run_figures(demo))
        return figures


def scenario(options: BenchOptions) -> Figures:
    """The benchmark entry point."""
    if options.quick:
        return quick_figures()["writes-per-pr"]
    quiet_logs()
    return asyncio.run(measure())
