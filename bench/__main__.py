"""``python -m bench [scenario ...] [--quick] [--json] [--check]``: run benchmark scenarios and print figures.

Adding a scenario is one entry in :data:`SCENARIOS`: a name and the ``module:function``
that takes :class:`bench.common.BenchOptions` and returns a dict of figures (or a
list of them, one printed line each). Modules are imported only when their scenario runs.
With ``--check`` the exit status is 1 when a correctness figure
(:data:`bench.common.CORRECTNESS_KEYS`) is not zero.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from bench.common import (
    BenchOptions,
    Figures,
    Scenario,
    SharedPostgres,
    failed_checks,
    format_json,
    format_line,
)

SCENARIOS: dict[str, str] = {
    "claims": "bench.claims:scenario",
    "ingest": "bench.ingest:scenario",
    "rss": "bench.ingest:rss_scenario",
    "trigger-latency": "bench.trigger_latency:scenario",
    "scheduler-burst": "bench.scheduler_burst:scenario",
    "scheduler-scale": "bench.scheduler_scale:scenario",
    "writes-per-pr": "bench.writes_per_pr:scenario",
    "overhead": "bench.overhead:scenario",
    "idle": "bench.idle:scenario",
    "crash": "bench.crash:scenario",
    "retention": "bench.retention:scenario",
    "flood": "bench.flood:scenario",
    "sandbox": "bench.sandbox:scenario",
}

# Run only when named: their figures already appear in another scenario's lines.
EXPLICIT_ONLY: frozenset[str] = frozenset({"rss"})


def load_scenario(name: str) -> Scenario:
    """Import the function registered for ``name``."""
    module_name, _, attribute = SCENARIOS[name].partition(":")
    function: Scenario = getattr(importlib.import_module(module_name), attribute)
    return function


def run(names: Sequence[str], options: BenchOptions) -> list[tuple[str, Figures]]:
    """Run scenarios in order and collect ``(name, figures)`` pairs."""
    results: list[tuple[str, Figures]] = []
    for name in names:
        outcome = load_scenario(name)(options)
        for figures in outcome if isinstance(outcome, list) else [outcome]:
            results.append((name, figures))
    return results


def join_option_values(argv: Sequence[str]) -> list[str]:
    """Turn a scenario option written ``--db sqlite`` into ``--db=sqlite`` so it is not read as a scenario."""
    own = {"--quick", "--json", "--check"}
    joined: list[str] = []
    for arg in argv:
        previous = joined[-1] if joined else ""
        if (previous.startswith("--") and "=" not in previous and previous not in own
                and not arg.startswith("-") and arg not in SCENARIOS):
            joined[-1] = f"{previous}={arg}"
        else:
            joined.append(arg)
    return joined


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the chosen (or all) scenarios and print one line per result."""
    parser = argparse.ArgumentParser(prog="python -m bench", description="Agent-Z benchmarks.")
    parser.add_argument("scenarios", nargs="*", metavar="scenario", help=f"any of: {', '.join(SCENARIOS)}")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of lines")
    parser.add_argument("--check", action="store_true", help="exit 1 when a correctness figure is not zero")
    args, extra = parser.parse_known_args(join_option_values(sys.argv[1:] if argv is None else argv))
    unknown = [name for name in args.scenarios if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    names = args.scenarios or [name for name in SCENARIOS if name not in EXPLICIT_ONLY]
    postgres = SharedPostgres()  # started by the first scenario that needs it, reused by the later ones
    options = BenchOptions(quick=args.quick, extra=tuple(extra), postgres=postgres)
    results: list[tuple[str, Figures]] = []
    try:
        if args.json:
            results = run(names, options)
            print(format_json(results))
        else:
            for name in names:
                for _, figures in run([name], options):
                    results.append((name, figures))
                    print(format_line(name, figures), flush=True)
    finally:
        postgres.close()
    failures = failed_checks(results) if args.check else []
    for failure in failures:
        print(f"check failed: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
