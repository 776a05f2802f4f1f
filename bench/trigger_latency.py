"""Trigger latency: a ``/agent-z run`` comment until a planner process has claimed the run.

``python -m bench trigger-latency [--trials K]`` starts fakehub in this process (the
GitHub API the receiver checks the commenter's permission with, and the repository
the planner clones), then ``agentz receiver`` and ``agentz planner`` as separate
processes on a SQLite file, with the scripted backend. Each trial comments
``/agent-z run`` on a fresh issue as a different user holding write permission (so
every trial asks GitHub for the permission), POSTs the signed ``issue_comment``
delivery, and measures from the POST to the ``claimed`` event of the run. One
untimed warm-up trial runs first. Printed::

    trigger-latency: trials=<k> p50_s=<s> max_s=<s> enqueued_p50_s=<s> lost=<triggers never claimed>

``enqueued_p50_s`` is the receiver's share (store, permission check, enqueue); the rest
is the planner noticing the run. Trials start at random moments, so the planner's
idle poll (``workers.pool.IDLE_POLL_SECONDS``) is met at a random phase, as with real
comments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from collections.abc import Awaitable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import BenchOptions, Figures, percentile

SECRET = "bench-trigger-secret"
APP_ID = 4711
APP_SLUG = "agent-z-bench"
REPO = "bench/trigger"
PLAN = {"summary": "Change the greeting", "steps": ["edit hello.py"], "files": ["hello.py"], "modules": [],
        "risk": "low"}
CLAIM_TIMEOUT = 30.0
WARMUP_TIMEOUT = 90.0
SETTLE_TIMEOUT = 60.0
_POLL = 0.01


def private_key_pem() -> str:
    """A fresh RSA key for the benchmark's App."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode()


@dataclass(frozen=True)
class RunState:
    """The newest run of an issue: its status, when it was enqueued and first claimed."""

    status: str | None
    enqueued_at: float | None = None
    claimed_at: float | None = None


def run_state(db: Any, repo: str, number: int) -> RunState:
    """Read the newest run of ``repo#number`` and its ``enqueued`` and first ``claimed`` events."""
    from sqlalchemy import select

    from agentz_app.store.models import Event, Run

    with db.read() as session:
        run = session.execute(
            select(Run.id, Run.status).where(Run.repo == repo, Run.issue_number == number)
            .order_by(Run.created_at.desc()).limit(1)
        ).first()
        if run is None:
            return RunState(None)
        first: dict[str, float] = {}
        for kind, created in session.execute(
            select(Event.kind, Event.created_at)
            .where(Event.run_id == run[0], Event.kind.in_(["enqueued", "claimed"]))
            .order_by(Event.id)
        ):
            first.setdefault(str(kind), float(created))
    return RunState(str(run[1]), first.get("enqueued"), first.get("claimed"))


async def wait_for(db: Any, number: int, done: Any, *, services: Sequence[Any]) -> RunState:
    """Poll the run of issue ``number`` until ``done(state)``. Raises if a service died."""
    while True:
        for service in services:
            if not service.alive():
                raise RuntimeError(f"{service.name} exited:\n{service.log_tail()}")
        state: RunState = await db.run(run_state, db, REPO, number)
        if done(state):
            return state
        await asyncio.sleep(_POLL)


async def within(seconds: float, waiting: Awaitable[RunState]) -> RunState | None:
    """What ``waiting`` returns, or None when it takes longer than ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            return await waiting
    except TimeoutError:
        return None


class Trigger:
    """Comment ``/agent-z run`` through fakehub and deliver the signed webhook to the receiver."""

    def __init__(self, hub: Any, http: Any, url: str) -> None:
        self.hub = hub
        self.http = http
        self.url = url

    async def comment(self, number: int, user: str) -> float:
        """Deliver the comment on ``number`` by ``user``; return when the POST started (epoch seconds)."""
        from agentz_app.fakehub import sign

        self.hub.comments.create(REPO, number, "/agent-z run", user=user)
        emitted = self.hub.emitted("issue_comment", "created")[-1]
        body = json.dumps(emitted["payload"], separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": "issue_comment",
            "X-GitHub-Delivery": emitted["guid"],
            "X-Hub-Signature-256": sign(SECRET.encode(), body),
        }
        started = time.time()
        async with self.http.post(self.url, data=body, headers=headers) as response:
            await response.read()
            if response.status != 202:
                raise RuntimeError(f"receiver answered {response.status} to the trigger comment")
        return started


async def measure(trials: int, workdir: Path, db_url: str) -> Figures:
    """Run one warm-up and ``trials`` timed triggers; return the latency figures."""
    import aiohttp

    from agentz_app.fakehub import FakeHub
    from agentz_app.store.db import Database
    from bench.services import hermetic_env, start, start_receiver, stop_all
    from workers.pool import IDLE_POLL_SECONDS

    pem = private_key_pem()
    key_path = workdir / "app.pem"
    key_path.write_text(pem)
    key_path.chmod(0o600)
    steps_path = workdir / "steps.json"
    steps_path.write_text(json.dumps([{"role": "task_lead", "json": PLAN}]))
    hub = FakeHub(workdir / "fakehub", webhook_secret=SECRET, app_id=APP_ID, app_slug=APP_SLUG,
                  private_key_pem=pem)
    await hub.start("127.0.0.1", 0)
    db = Database.from_url(db_url)
    latencies: list[float] = []
    enqueued: list[float] = []
    lost = 0
    rng = random.Random(7)
    with ExitStack() as stack:
        stack.callback(db.dispose)
        try:
            await hub.repos.create(REPO, {"hello.py": "print('hello')\n"}, ci_command=None)
            numbers = [hub.issues.create(REPO, f"Greeting {i}", "Say hello politely.")["number"]
                       for i in range(trials + 1)]
            users = [f"maintainer{i}" for i in range(trials + 1)]
            for user in users:
                hub.repos.set_permission(REPO, user, "write")
            env = hermetic_env({
                "DATABASE_URL": db_url,
                "GITHUB_WEBHOOK_SECRET": SECRET,
                "GITHUB_APP_ID": str(APP_ID),
                "GITHUB_APP_SLUG": APP_SLUG,
                "GITHUB_PRIVATE_KEY_PATH": str(key_path),
                "GITHUB_API_URL": hub.api_url,
                "GIT_URL_TEMPLATE": hub.git_url_template,
                "STATE_DIR": str(workdir / "state"),
                "DEFAULT_BACKEND": "scripted",
                "SCRIPTED_AGENT_FILE": str(steps_path),
                "LOG_LEVEL": "warning",
                "LOG_FORMAT": "json",
            })
            planner = start("planner", ["-m", "agentz_app", "planner"], env=env, workdir=workdir)
            stack.callback(planner.stop)
            receiver, base = await asyncio.to_thread(start_receiver, env, workdir)
            services = (receiver, planner)
            stack.callback(stop_all, services)
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
                trigger = Trigger(hub, http, f"{base}/api/github/webhooks")
                for index, (number, user) in enumerate(zip(numbers, users, strict=True)):
                    await asyncio.sleep(rng.uniform(0.0, IDLE_POLL_SECONDS))
                    started = await trigger.comment(number, user)
                    timeout = WARMUP_TIMEOUT if index == 0 else CLAIM_TIMEOUT
                    claimed = await within(timeout, wait_for(db, number, lambda s: s.claimed_at is not None,
                                                             services=services))
                    if claimed is None or claimed.claimed_at is None:
                        if index == 0:
                            raise RuntimeError(f"the warm-up trigger was not claimed:\n{receiver.log_tail()}\n"
                                               f"{planner.log_tail()}")
                        lost += 1
                        continue
                    if index > 0:
                        latencies.append(claimed.claimed_at - started)
                        enqueued.append((claimed.enqueued_at or claimed.claimed_at) - started)
                    # One planner: let it finish this plan before the next trigger.
                    await within(SETTLE_TIMEOUT, wait_for(db, number, lambda s: s.status != "planning",
                                                          services=services))
        finally:
            await hub.stop()
    return {
        "trials": trials,
        "p50_s": round(percentile(latencies, 0.5), 2),
        "max_s": round(max(latencies, default=0.0), 2),
        "enqueued_p50_s": round(percentile(enqueued, 0.5), 2),
        "lost": lost,
    }


def _parse(extra: Sequence[str], quick: bool) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench trigger-latency", add_help=False)
    parser.add_argument("--trials", type=int, default=None)
    args, _ = parser.parse_known_args(list(extra))
    if args.trials is None:
        args.trials = 5 if quick else 20
    if not 1 <= args.trials <= 500:
        parser.error("--trials must be between 1 and 500")
    return args


def scenario(options: BenchOptions) -> Figures:
    """Comment-to-claim latency with real receiver and planner processes."""
    from bench.common import sqlite_database

    args = _parse(options.extra, options.quick)
    with (tempfile.TemporaryDirectory(prefix="agentz-bench-trigger-", ignore_cleanup_errors=True) as workdir,
          sqlite_database() as url):
        return asyncio.run(measure(args.trials, Path(workdir), url))
