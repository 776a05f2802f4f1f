"""kill -9 a random role at a random moment, again and again: nothing may be lost or done twice.

``python -m bench crash [--trials N] [--seed S] [--wave W] [--window SECONDS]`` runs every
role under the supervisor against fakehub, with short leases (``LEASE_SECONDS=3``,
``HEARTBEAT_SECONDS=1``, ``RECONCILE_INTERVAL_SECONDS=1``) and a short resync (2 s,
which also asks GitHub to redeliver failed webhooks). Trials run in waves of ``W``: a
maintainer opens ``W`` issues and adds the trigger label, and each trial sends SIGKILL
to one role (receiver, scheduler, planner, a worker or the reconciler — the supervisor
restarts it) at a random moment within ``--window`` seconds; then the wave waits for
every run to finish. The RNG is seeded (``--seed``, printed). Prints
``crash: trials=<n> seed=<s> lost_runs=<n> duplicate_prs=<n> duplicate_comments=<n> double_claims=<n>
duplicate_checks=<n> failed_runs=<n> kills=<role counts>``.

``lost_runs`` counts issues that never got a run or whose run never reached a final
state; ``failed_runs`` counts runs that ended failed or needs_human (visible, not lost);
double claims come from the events table (two live leases on one run, or one attempt
claimed twice).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from bench.common import BenchOptions, Figures, count_double_claims, load_events
from bench.loop import quiet_logs

FINAL = frozenset({"done", "merged", "failed", "needs_human", "cancelled"})
TRIGGER_LABEL = "agent-z"
SETTINGS = {
    "LEASE_SECONDS": "3",
    "HEARTBEAT_SECONDS": "1",
    "RECONCILE_INTERVAL_SECONDS": "1",
    "RESYNC_INTERVAL_SECONDS": "2",
    "SCHEDULER_DEBOUNCE_SECONDS": "0.5",
}
_WAVE_TIMEOUT = 120.0


def note_title(trial: int) -> str:
    return f"Note {trial:04d}"


def note_path(trial: int) -> str:
    return f"notes/note_{trial:04d}.md"


def crash_script(trials: int) -> tuple[dict[str, Any], ...]:
    """Instant scripted answers for trials ``1..trials``: a one-file plan, the file, an approval.

    Steps match the issue's unique title; pull requests share the numbering with issues,
    so the Scheduler Agent gets a ranking step for every number the trials can reach.
    """
    steps: list[dict[str, Any]] = []
    for trial in range(1, trials + 1):
        marker = f": {note_title(trial)}"
        steps += [
            {"role": "task_lead", "match": marker,
             "json": {"summary": f"Write {note_path(trial)}.", "steps": ["Write the note"],
                      "files": [note_path(trial)], "modules": [], "risk": "low", "test_command": "true"}},
            {"role": "developer", "match": marker,
             "write": [{"path": note_path(trial), "content": f"Note {trial}.\n"}], "text": "Wrote the note."},
        ]
    for number in range(1, 3 * trials + 20):
        steps.append({"role": "scheduler", "regex": f"(?m)^### #{number}:",
                      "json": {"ranking": [{"number": number, "score": 50, "reason": "labelled by a maintainer"}]}})
    steps += [
        {"role": "reviewer", "json": {"verdict": "approve", "findings": [], "summary": "Fine."}},
        {"role": "scheduler", "json": {"ranking": []}},
    ]
    return tuple(steps)


def parse(extra: Sequence[str], quick: bool) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench crash")
    parser.add_argument("--trials", type=int, default=3 if quick else 100)
    parser.add_argument("--seed", type=int, default=20240611)
    parser.add_argument("--wave", type=int, default=3 if quick else 2, help="issues (and kills) per wave")
    parser.add_argument("--window", type=float, default=5.0 if quick else 8.0,
                        help="kills fall within this many seconds of a wave's start")
    args, _ = parser.parse_known_args(list(extra))
    if args.trials < 1 or args.wave < 1 or args.window <= 0:
        parser.error("--trials and --wave must be positive, --window above 0")
    return args


async def measure(trials: int, *, seed: int, wave: int, window: float) -> Figures:
    """Run the trials in waves against one supervised service and audit the result."""
    from agentz_app.demo import scenario as demo_scenario
    from agentz_app.demo.runner import Demo, DemoOptions
    from agentz_app.supervisor import RestartPolicy

    rng = random.Random(seed)
    kills: Counter[str] = Counter()
    options = DemoOptions(
        workers=2, timeout=_WAVE_TIMEOUT, issues=(), ci_command="true", script=crash_script(trials),
        env={**SETTINGS, "MAX_PARALLEL_TASKS": str(max(wave, 2))},
        restart_policy=RestartPolicy(base_delay=0.2, max_delay=2.0, max_crashes=1_000_000, crash_window=60.0),
    )
    async with Demo(options) as demo:
        assert demo.hub is not None and demo.supervisor is not None
        hub, names = demo.hub, demo.supervisor.names
        await demo.seed()
        opened = 0
        lost = 0

        async def kill_later(delay: float, name: str) -> None:
            await asyncio.sleep(delay)
            # A role still restarting from an earlier kill has no pid yet: wait for it.
            running = await demo.wait_for(lambda: demo.pid_of(name) is not None, timeout=10.0, interval=0.05)
            if running and demo.kill(name) is not None:
                kills[name] += 1

        while opened < trials:
            numbers = []
            for _ in range(min(wave, trials - opened)):
                title, body = note_title(opened + 1), f"Add {note_path(opened + 1)}."
                issue = hub.create_issue(demo_scenario.REPO, title, body, user=demo_scenario.MAINTAINER)
                hub.add_labels(demo_scenario.REPO, int(issue["number"]), [TRIGGER_LABEL],
                               actor=demo_scenario.MAINTAINER)
                numbers.append(int(issue["number"]))
                opened += 1
            killers = [asyncio.create_task(kill_later(rng.uniform(0, window), rng.choice(names))) for _ in numbers]

            def finished(numbers: list[int] = numbers) -> bool:
                runs = demo.runs()
                return all(n in runs and str(runs[n].status) in FINAL for n in numbers)

            await asyncio.gather(*killers)
            if not await demo.wait_for(finished, timeout=_WAVE_TIMEOUT, interval=0.2):
                runs = demo.runs()
                lost += sum(1 for n in numbers if n not in runs or str(runs[n].status) not in FINAL)
        await demo.settle(quiet=2.0, timeout=60.0)
        runs = demo.runs()
        audit = demo.audit()
        failed = sum(1 for run in runs.values() if str(run.status) in {"failed", "needs_human"})
        double_claims = count_double_claims(load_events(demo.env["DATABASE_URL"]))
    return {
        "trials": trials, "seed": seed, "lost_runs": lost, "duplicate_prs": audit.duplicate_pulls(),
        "duplicate_comments": audit.duplicate_comments(), "double_claims": double_claims,
        "duplicate_checks": len(audit.duplicate_checks), "failed_runs": failed,
        "kills": ",".join(f"{name}:{count}" for name, count in sorted(kills.items())) or "none",
    }


def scenario(options: BenchOptions) -> Figures:
    """The benchmark entry point."""
    args = parse(options.extra, options.quick)
    quiet_logs()
    started = time.monotonic()
    figures = asyncio.run(measure(args.trials, seed=args.seed, wave=args.wave, window=args.window))
    figures["seconds"] = round(time.monotonic() - started, 1)
    return figures
