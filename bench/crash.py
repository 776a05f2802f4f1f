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

``--hosts 2`` adds a second host sharing the database (PostgreSQL when its server
binaries are installed, else the SQLite file) and the fake GitHub, with its own
``HOST_ID`` and ``STATE_DIR``: host A runs every role, host B a planner, a worker and
a reconciler, and kills hit either host. Each developer call writes its note, then
keeps working for a moment (``CHECKPOINT_SECONDS=0.5`` checkpoints it meanwhile); a
resumed call writes nothing, so the note reaches the pull request only through a
checkpoint. The line then also has ``hosts=2`` and ``lost_commits``: runs whose note
was checkpointed but is missing from the pull request's head.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import subprocess
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import (
    BenchOptions,
    Figures,
    SharedPostgres,
    count_double_claims,
    load_events,
    postgres_available,
    postgres_server,
)
from bench.loop import quiet_logs

if TYPE_CHECKING:
    from agentz_app.demo.runner import Demo

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
HOSTS = ("crash-a", "crash-b")
SECOND_HOST_ROLES = ("planner", "worker", "reconciler")
TWO_HOST_SETTINGS = {"CHECKPOINT_SECONDS": "0.5"}
TAKEOVER = "The change so far, as a unified diff"  # shown to a fresh session continuing checkpointed work


def note_title(trial: int) -> str:
    return f"Note {trial:04d}"


def note_path(trial: int) -> str:
    return f"notes/note_{trial:04d}.md"


def crash_script(trials: int, *, work_seconds: float = 0.0) -> tuple[dict[str, Any], ...]:
    """Instant scripted answers for trials ``1..trials``: a one-file plan, the file, an approval.

    Steps match the issue's unique title; pull requests share the numbering with issues,
    so the Scheduler Agent gets a ranking step for every number the trials can reach.
    With ``work_seconds`` the developer's first call keeps working that long after writing
    the note, and every later developer call (a resumed one) writes nothing.
    """
    steps: list[dict[str, Any]] = []
    if work_seconds:
        steps.append({"role": "developer", "match": TAKEOVER, "text": "The note is already there."})
    for trial in range(1, trials + 1):
        marker = f": {note_title(trial)}"
        write: dict[str, Any] = {"role": "developer", "match": marker, "text": "Wrote the note.",
                                 "write": [{"path": note_path(trial), "content": f"Note {trial}.\n"}]}
        if work_seconds:
            write.update(call=1, run=[f"sleep {work_seconds:g}"])
        steps += [
            {"role": "task_lead", "match": marker,
             "json": {"summary": f"Write {note_path(trial)}.", "steps": ["Write the note"],
                      "files": [note_path(trial)], "modules": [], "risk": "low", "test_command": "true"}},
            write,
        ]
    if work_seconds:
        steps.append({"role": "developer", "text": "The note is already there."})
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
    parser.add_argument("--hosts", type=int, choices=(1, 2), default=1,
                        help="2: a second host (own HOST_ID and STATE_DIR) shares the database")
    args, _ = parser.parse_known_args(list(extra))
    if args.trials < 1 or args.wave < 1 or args.window <= 0:
        parser.error("--trials and --wave must be positive, --window above 0")
    return args


@contextlib.contextmanager
def _shared_database(hosts: int, shared: SharedPostgres | None) -> Iterator[dict[str, str]]:
    """Settings naming the database two hosts share: PostgreSQL when installed (one host: the demo's SQLite)."""
    if hosts == 1 or not postgres_available():
        yield {}
        return
    with postgres_server(shared) as create:
        yield {"DATABASE_URL": create("crash")}


def lost_commits(repo: Path, runs: Sequence[Any], events: Sequence[Any]) -> int:
    """Runs whose note was in a pushed checkpoint but is missing from the final pushed head."""
    lost = 0
    for run in runs:
        if not run.head_sha or not run.title.startswith("Note "):
            continue
        path = note_path(int(run.title.split()[1]))
        shas = {str(e.payload.get("sha") or e.payload.get("checkpoint_sha") or "") for e in events
                if e.run_id == run.id} - {""}
        if any(_has_file(repo, sha, path) for sha in shas) and not _has_file(repo, run.head_sha, path):
            lost += 1
    return lost


def _has_file(repo: Path, sha: str, path: str) -> bool:
    found = subprocess.run(["git", "cat-file", "-e", f"{sha}:{path}"], cwd=repo, capture_output=True, check=False)
    return found.returncode == 0


async def measure(trials: int, *, seed: int, wave: int, window: float, hosts: int = 1,
                  postgres: SharedPostgres | None = None) -> Figures:
    """Run the trials in waves against one supervised service (or two hosts) and audit the result."""
    with _shared_database(hosts, postgres) as database:
        return await _measure(trials, seed=seed, wave=wave, window=window, hosts=hosts, database=database)


def _progress_events(db: Any) -> list[Any]:
    """The checkpoint and transition events of every run."""
    from sqlalchemy import select

    from agentz_app.store.models import Event

    with db.read() as session:
        return list(session.scalars(select(Event).where(Event.kind.in_(("checkpoint", "transition")))))


async def _running(demo: Demo, name: str, host: str) -> bool:
    """True while supervised child ``name`` of ``host`` runs (read on a thread)."""
    return await asyncio.to_thread(demo.pid_of, name, host=host) is not None


async def _measure(trials: int, *, seed: int, wave: int, window: float, hosts: int,
                   database: dict[str, str]) -> Figures:
    from agentz_app.demo import scenario as demo_scenario
    from agentz_app.demo.runner import Demo, DemoOptions
    from agentz_app.fakehub.gitrepos import repo_path
    from agentz_app.supervisor import RestartPolicy

    rng = random.Random(seed)
    kills: Counter[str] = Counter()
    two = hosts == 2
    restarts = RestartPolicy(base_delay=0.2, max_delay=2.0, max_crashes=1_000_000, crash_window=60.0)
    env = {**SETTINGS, "MAX_PARALLEL_TASKS": str(max(wave, 2)), **database}
    if two:
        env.update({**TWO_HOST_SETTINGS, "HOST_ID": HOSTS[0]})
    options = DemoOptions(
        workers=1 if two else 2, timeout=_WAVE_TIMEOUT, issues=(), ci_command="true",
        script=crash_script(trials, work_seconds=1.5 if two else 0.0), env=env, restart_policy=restarts,
    )
    async with Demo(options) as demo:
        assert demo.hub is not None
        assert demo.supervisor is not None
        hub = demo.hub
        names = [(demo.host, name) for name in demo.supervisor.names]
        if two:
            second = demo.add_host(HOSTS[1], SECOND_HOST_ROLES, restart_policy=restarts)
            names += [(HOSTS[1], name) for name in second.names]
        await demo.seed()
        assert demo.db is not None
        store = demo.db
        opened = 0
        lost = 0

        async def kill_later(delay: float, target: tuple[str, str]) -> None:
            host, name = target
            await asyncio.sleep(delay)
            # A role still restarting from an earlier kill has no pid yet: wait for it.
            running = await demo.wait_for(lambda: _running(demo, name, host), timeout=10.0, interval=0.05)
            if running and await asyncio.to_thread(demo.kill, name, host=host) is not None:
                kills[f"{host}/{name}" if two else name] += 1

        while opened < trials:
            numbers = []
            for _ in range(min(wave, trials - opened)):
                title, body = note_title(opened + 1), f"Add {note_path(opened + 1)}."
                issue = hub.issues.create(demo_scenario.REPO, title, body, user=demo_scenario.MAINTAINER)
                hub.issues.add_labels(demo_scenario.REPO, int(issue["number"]), [TRIGGER_LABEL],
                               actor=demo_scenario.MAINTAINER)
                numbers.append(int(issue["number"]))
                opened += 1
            killers = [asyncio.create_task(kill_later(rng.uniform(0, window), rng.choice(names))) for _ in numbers]

            async def finished(numbers: list[int] = numbers) -> bool:
                runs = await store.run(demo.runs)
                return all(n in runs and str(runs[n].status) in FINAL for n in numbers)

            await asyncio.gather(*killers)
            if not await demo.wait_for(finished, timeout=_WAVE_TIMEOUT, interval=0.2):
                runs = await store.run(demo.runs)
                lost += sum(1 for n in numbers if n not in runs or str(runs[n].status) not in FINAL)
        await demo.settle(quiet=2.0)
        runs = await store.run(demo.runs)
        audit = demo.audit()
        failed = sum(1 for run in runs.values() if str(run.status) in {"failed", "needs_human"})
        double_claims = count_double_claims(await asyncio.to_thread(load_events, demo.env["DATABASE_URL"]))
        figures: Figures = {"trials": trials, "seed": seed}
        if two:
            events = await store.run(_progress_events, store)
            figures["hosts"] = hosts
            figures["lost_commits"] = lost_commits(repo_path(hub.root, demo_scenario.REPO), list(runs.values()),
                                                   events)
    figures.update({
        "lost_runs": lost, "duplicate_prs": audit.duplicate_pulls(),
        "duplicate_comments": audit.duplicate_comments(), "double_claims": double_claims,
        "duplicate_checks": len(audit.duplicate_checks), "failed_runs": failed,
        "kills": ",".join(f"{name}:{count}" for name, count in sorted(kills.items())) or "none",
    })
    return figures


def scenario(options: BenchOptions) -> Figures:
    """The benchmark entry point."""
    args = parse(options.extra, options.quick)
    quiet_logs()
    started = time.monotonic()
    figures = asyncio.run(measure(args.trials, seed=args.seed, wave=args.wave, window=args.window, hosts=args.hosts,
                                  postgres=options.postgres))
    figures["seconds"] = round(time.monotonic() - started, 1)
    return figures
