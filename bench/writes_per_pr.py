"""Content-creating GitHub requests per delivered pull request, in the demo scenario.

``python -m bench writes-per-pr`` runs ``agentz demo``'s scenario (fakehub in this
process, every role as a supervised child process, real git, the scripted agent),
waits until the deliverable issues are done and everything has settled (cleanup after
``done`` still edits labels and the status comment), then reads fakehub's counters.
Seeding the repository and issues happens inside fakehub, as a person would, and is
not counted; neither are installation-token requests. Prints
``writes-per-pr: writes_per_pr=<x> prs=<n> writes=<n> post=<n> patch=<n> put=<n> delete=<n>``.
"""

from __future__ import annotations

import asyncio
import sys

from bench.common import BenchOptions, Figures

_TIMEOUT = 150.0


def quiet_logs() -> None:
    """Keep the supervisor's log lines off stdout, where the figures go."""
    from agentz_app.logs import configure_logging

    configure_logging("json", "warning", stream=sys.stderr)


async def measure() -> Figures:
    """Run the demo scenario once and count writes per delivered PR."""
    from agentz_app.demo.runner import Demo, DemoOptions

    async with Demo(DemoOptions(timeout=_TIMEOUT)) as demo:
        assert demo.hub is not None
        await demo.seed()
        if not await demo.wait_delivered():
            raise RuntimeError("the demo did not deliver its issues; see the role logs")
        if not await demo.settle(quiet=2.0):
            raise RuntimeError("the demo did not settle after delivering")
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


def scenario(options: BenchOptions) -> Figures:
    """The benchmark entry point (quick and full run the same fixed scenario)."""
    quiet_logs()
    return asyncio.run(measure())
