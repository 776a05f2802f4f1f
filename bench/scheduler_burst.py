"""Scheduler burst: 100 issue events in a burst should cost one Scheduler Agent call, idleness none.

``python -m bench scheduler-burst [--events N] [--idle S]`` starts ``agentz receiver`` and
``agentz scheduler`` (scripted backend, 2 s debounce, 1 s with ``--quick``) as separate processes on a
SQLite file. Fakehub renders the webhooks: five issues are opened and delivered, and
once the scheduler has ranked them, N ``issues`` events (edits, labels added and
removed, round-robin over the issues) are POSTed concurrently. Agent calls are read
from the scripted backend's call counters. Printed::

    scheduler-burst: events=<n> debounce_s=<s> agent_calls_burst=<n> agent_calls_idle=<n>

``agent_calls_burst`` counts the calls from the burst until the scheduler's pass
after it has stored its ranking; ``agent_calls_idle`` the calls during the following
idle period with no changes (a burst split over two passes shows up there too).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.common import BenchOptions, Figures

SECRET = "bench-scheduler-secret"
REPO = "bench/scheduler"
ISSUES = 5
DEBOUNCE_SECONDS = 2.0
QUICK_DEBOUNCE_SECONDS = 1.0
WAIT_TIMEOUT = 60.0
_POLL = 0.05


def ranking_steps(numbers: Sequence[int]) -> list[dict[str, Any]]:
    """Scripted Scheduler Agent answers: rank the lowest-numbered candidate in the prompt.

    A ranking may only name current candidates, so each step matches the prompt's
    candidate heading; with no candidate matched the answer is an empty ranking.
    """
    steps: list[dict[str, Any]] = [
        {
            "role": "scheduler",
            "regex": f"(?m)^### #{number}:",
            "json": {"ranking": [{"number": number, "score": 80, "reason": "small and well specified"}]},
        }
        for number in sorted(numbers)
    ]
    steps.append({"role": "scheduler", "json": {"ranking": []}})
    return steps


def agent_calls(state_dir: Path, role: str = "scheduler") -> int:
    """Calls of ``role`` so far, summed over the scripted backend's per-workdir counters."""
    total = 0
    for path in (state_dir / "scripted" / "workdirs").glob("*.json"):
        try:
            counts = json.loads(path.read_text() or "{}")
        except (OSError, ValueError):
            continue  # replaced atomically; a vanished file is re-read next time
        if isinstance(counts, dict):
            total += int(counts.get(role, 0))
    return total


def burst_events(hub: Any, numbers: Sequence[int], count: int) -> list[dict[str, Any]]:
    """Make ``count`` issue changes in fakehub (edit, label, unlabel per issue in turn); return their events."""
    start = len(hub.emitted("issues"))
    for index in range(count):
        number = numbers[index % len(numbers)]
        change = (index // len(numbers)) % 3
        if change == 0:
            hub.issues.update(REPO, number, {"body": f"Make step {index} faster; revision {index}."}, actor="octocat")
        elif change == 1:
            hub.issues.add_labels(REPO, number, ["bug"], actor="octocat")
        else:
            hub.issues.remove_label(REPO, number, "bug", actor="octocat")
    events: list[dict[str, Any]] = hub.emitted("issues")[start:]
    if len(events) != count:
        raise RuntimeError(f"expected {count} issue events from fakehub, got {len(events)}")
    return events


async def post_all(http: Any, url: str, events: Sequence[dict[str, Any]], *, concurrency: int = 32) -> None:
    """POST signed deliveries concurrently; every one must be acknowledged."""
    from agentz_app.fakehub import sign

    gate = asyncio.Semaphore(concurrency)

    async def post(event: dict[str, Any]) -> None:
        body = json.dumps(event["payload"], separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": event["event"],
            "X-GitHub-Delivery": event["guid"],
            "X-Hub-Signature-256": sign(SECRET.encode(), body),
        }
        async with gate, http.post(url, data=body, headers=headers) as response:
            await response.read()
            if response.status not in (200, 202):
                raise RuntimeError(f"receiver answered {response.status} to {event['event']}.{event['action']}")

    await asyncio.gather(*(post(event) for event in events))


def inbox_state(db: Any, repo: str) -> dict[str, Any]:
    """Processed and failed deliveries, pending dirty mark and last ranking time for ``repo``."""
    from sqlalchemy import func, select

    from agentz_app.store.models import Delivery
    from agentz_app.store.scheduler_state import is_dirty, last_pass_at

    with db.read() as session:
        processed = session.scalar(select(func.count()).select_from(Delivery).where(Delivery.processed_at.is_not(None)))
        failing = session.scalar(select(func.count()).select_from(Delivery).where(Delivery.error.is_not(None),
                                                                                 Delivery.processed_at.is_(None)))
        last_processed = session.scalar(select(func.max(Delivery.processed_at)))
        dirty = is_dirty(session, repo)
        ranked_at = last_pass_at(session, repo)
    return {"processed": int(processed or 0), "failing": int(failing or 0),
            "last_processed": float(last_processed or 0.0), "dirty": dirty, "ranked_at": ranked_at}


async def wait_until(check: Callable[[], bool], what: str, services: Sequence[Any]) -> None:
    """Poll ``check`` (in a thread) until true; raise with the services' logs after WAIT_TIMEOUT or on an exit."""
    deadline = time.monotonic() + WAIT_TIMEOUT
    while time.monotonic() < deadline:
        for service in services:
            if not service.alive():
                raise RuntimeError(f"{service.name} exited while waiting for {what}:\n{service.log_tail()}")
        if await asyncio.to_thread(check):
            return
        await asyncio.sleep(_POLL)
    logs = "\n".join(f"{s.name}:\n{s.log_tail()}" for s in services)
    raise RuntimeError(f"timed out waiting for {what}\n{logs}")


async def measure(events: int, idle_seconds: float, workdir: Path, db_url: str, *,
                  debounce: float = DEBOUNCE_SECONDS) -> Figures:
    """Deliver the opening events, then the burst, and count Scheduler Agent calls."""
    import aiohttp

    from agentz_app.fakehub import FakeHub
    from agentz_app.store.db import Database
    from bench.services import hermetic_env, start, start_receiver, stop_all

    hub = FakeHub(workdir / "fakehub", webhook_secret=SECRET)
    await hub.repos.create(REPO, {"README.md": "# scheduler\n"}, ci_command=None)
    numbers = [hub.issues.create(REPO, f"Speed up step {i}", f"Step {i} is slow.")["number"]
               for i in range(1, ISSUES + 1)]
    opened = hub.emitted("issues", "opened")
    steps_path = workdir / "steps.json"
    steps_path.write_text(json.dumps(ranking_steps(numbers)))
    state_dir = workdir / "state"
    env = hermetic_env({
        "DATABASE_URL": db_url,
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "STATE_DIR": str(state_dir),
        "DEFAULT_BACKEND": "scripted",
        "SCRIPTED_AGENT_FILE": str(steps_path),
        "SCHEDULER_DEBOUNCE_SECONDS": str(debounce),
        "SCHEDULER_TRUST": "anyone",  # no GitHub to ask about the issues' author; this measures coalescing
        "LOG_LEVEL": "warning",
        "LOG_FORMAT": "json",
    })
    db = Database.from_url(db_url)
    with ExitStack() as stack:
        stack.callback(db.dispose)
        scheduler = start("scheduler", ["-m", "agentz_app", "scheduler"], env=env, workdir=workdir)
        stack.callback(scheduler.stop)
        receiver, base = await asyncio.to_thread(start_receiver, env, workdir)
        services = (receiver, scheduler)
        stack.callback(stop_all, services)
        url = f"{base}/api/github/webhooks"

        def settled(expected: int, after: float) -> Callable[[], bool]:
            def check() -> bool:
                state = inbox_state(db, REPO)
                if state["failing"]:
                    raise RuntimeError(f"{state['failing']} deliveries failed processing:\n{receiver.log_tail()}")
                return bool(state["processed"] >= expected and not state["dirty"]
                            and state["ranked_at"] is not None
                            and state["ranked_at"] >= max(after, state["last_processed"]))
            return check

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            began = time.time()
            await post_all(http, url, opened)
            await wait_until(settled(len(opened), began), "the first ranking", services)
            baseline = agent_calls(state_dir)
            if baseline < 1:
                raise RuntimeError("the scheduler ranked the opened issues without an agent call")
            burst = burst_events(hub, numbers, events)
            began = time.time()
            await post_all(http, url, burst)
            await wait_until(settled(len(opened) + len(burst), began), "the pass after the burst", services)
            after_burst = agent_calls(state_dir)
            await asyncio.sleep(idle_seconds)
            after_idle = agent_calls(state_dir)
    return {
        "events": events,
        "debounce_s": debounce,
        "agent_calls_burst": after_burst - baseline,
        "agent_calls_idle": after_idle - after_burst,
    }


def _parse(extra: Sequence[str], quick: bool) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench scheduler-burst", add_help=False)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--idle", type=float, default=None, help="idle seconds after the burst")
    args, _ = parser.parse_known_args(list(extra))
    if args.idle is None:
        args.idle = 2.0 if quick else 15.0
    if not 1 <= args.events <= 10_000:
        parser.error("--events must be between 1 and 10000")
    if not 0 <= args.idle <= 3600:
        parser.error("--idle must be between 0 and 3600 seconds")
    return args


def scenario(options: BenchOptions) -> Figures:
    """Scheduler Agent calls for a burst of issue events and for an idle period."""
    from bench.common import sqlite_database

    args = _parse(options.extra, options.quick)
    debounce = QUICK_DEBOUNCE_SECONDS if options.quick else DEBOUNCE_SECONDS
    with (tempfile.TemporaryDirectory(prefix="agentz-bench-scheduler-", ignore_cleanup_errors=True) as workdir,
          sqlite_database() as url):
        return asyncio.run(measure(args.events, args.idle, Path(workdir), url, debounce=debounce))
