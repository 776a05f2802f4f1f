"""Webhook ingest: signed deliveries against a real receiver process, compared with a no-op server.

``python -m bench ingest [--db sqlite|postgres] [--deliveries N] [--concurrency C]`` starts
``agentz receiver`` (no GitHub App configured) on a SQLite file and on an ephemeral
PostgreSQL, and a separate load process POSTs N signed ~10 KB ``issues`` deliveries
(unique ``X-GitHub-Delivery``, plus 5 % deliberate repeats, shuffled) with C requests
in flight, after opening its connections, three times with fresh ids. The same client
first loads a no-op aiohttp server the same way; for both, the median round's rate
counts. All servers start before any load, and each one is stopped right after its
own. Latencies, lost and duplicated cover every round. Printed::

    ingest: db=sqlite deliveries=<n> concurrency=<c> deliveries_per_s=<n> p50_ms=<n> p99_ms=<n>
            noop_per_s=<n> vs_noop=<ratio> rss_idle_mb=<n> rss_mb=<peak receiver VmRSS under load>
            rejected=<non-2xx answers>
            lost=<acknowledged but not stored> duplicated=<stored or accepted twice>

``python -m bench rss`` runs only the SQLite measurement. The module is also the
entry point of the helper processes: ``python -m bench.ingest noop --port P`` and
``python -m bench.ingest load SPEC.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import BenchOptions, Figures, SharedPostgres, percentile
from bench.services import Service

SECRET = "bench-webhook-secret"
REPO = "bench/ingest"
EVENT = "issues"
PAYLOAD_BYTES = 10_000
REPEAT_FRACTION = 0.05
ROUNDS = 3
WEBHOOK_PATH = "/api/github/webhooks"
_LOAD_TIMEOUT = 600.0


# Payloads and delivery lists (pure apart from the seeded generator) -----------------


async def _fakehub_payload(folder: Path) -> dict[str, Any]:
    from agentz_app.fakehub import FakeHub

    hub = FakeHub(folder / "fakehub", webhook_secret=SECRET)
    await hub.repos.create(REPO, {"README.md": "# ingest\n"})
    hub.issues.create(REPO, "Ingest benchmark issue", "", user="octocat", labels=["bug"])
    payload: dict[str, Any] = hub.emitted(EVENT, "opened")[-1]["payload"]
    return payload


def issue_payload_template(size: int = PAYLOAD_BYTES) -> dict[str, Any]:
    """A realistic ``issues.opened`` payload (rendered by fakehub) padded to about ``size`` bytes."""
    with tempfile.TemporaryDirectory(prefix="agentz-bench-payload-", ignore_cleanup_errors=True) as folder:
        payload = asyncio.run(_fakehub_payload(Path(folder)))
    base = len(json.dumps(payload, separators=(",", ":")))
    sentence = "Steps to reproduce: open the app, click the button, observe the error in the log. "
    padding = max(0, size - base)
    payload["issue"]["body"] = (sentence * (padding // len(sentence) + 1))[:padding]
    return payload


def delivery_plan(count: int, *, repeat_fraction: float, seed: int) -> list[tuple[str, int]]:
    """``(delivery_id, issue_number)`` in sending order: ``count`` unique ids plus shuffled repeats."""
    rng = random.Random(seed)
    unique = [(str(uuid.UUID(int=rng.getrandbits(128), version=4)), index + 1) for index in range(count)]
    repeats = rng.sample(unique, round(count * repeat_fraction))
    order = unique + repeats
    rng.shuffle(order)
    return order


@dataclass(frozen=True)
class LoadResult:
    """What the load process measured: per request (delivery id, HTTP status, latency ms)."""

    elapsed: float
    requests: list[tuple[str, int, float]]

    @property
    def rate(self) -> float:
        return len(self.requests) / self.elapsed if self.elapsed > 0 else 0.0


def audit(requests: Iterable[tuple[str, int, float]], stored: Sequence[str]) -> tuple[int, int]:
    """``(lost, duplicated)``: acknowledged ids not stored; ids stored or accepted (202) more than once."""
    requests = list(requests)
    acknowledged = {delivery_id for delivery_id, status, _ in requests if 200 <= status < 300}
    stored_counts = Counter(stored)
    accepted = Counter(delivery_id for delivery_id, status, _ in requests if status == 202)
    lost = len(acknowledged - set(stored_counts))
    duplicated = sum(n - 1 for n in stored_counts.values() if n > 1) + sum(n - 1 for n in accepted.values() if n > 1)
    return lost, duplicated


# The helper processes ----------------------------------------------------------------


def serve_noop(port: int) -> None:
    """A no-op webhook server: answer 202 to every POST without looking at it."""
    from aiohttp import web

    async def accept(_: web.Request) -> web.Response:
        return web.Response(status=202)

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(client_max_size=25 * 1024 * 1024)
    app.router.add_post(WEBHOOK_PATH, accept)
    app.router.add_get("/readyz", health)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def _prepared(spec: dict[str, Any], seed: int) -> list[tuple[str, bytes, dict[str, str]]]:
    """The signed requests of one round: (delivery id, body, headers) in sending order."""
    template = json.loads(Path(spec["template"]).read_text())
    secret = str(spec["secret"]).encode()
    issue = template["issue"]
    prepared: list[tuple[str, bytes, dict[str, str]]] = []
    bodies: dict[str, tuple[bytes, dict[str, str]]] = {}
    for delivery_id, number in delivery_plan(int(spec["count"]), repeat_fraction=float(spec["repeats"]), seed=seed):
        if delivery_id not in bodies:
            issue["number"], issue["id"] = number, 10_000_000 + number
            issue["title"] = f"Ingest benchmark issue {number}"
            body = json.dumps(template, separators=(",", ":")).encode()
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "GitHub-Hookshot/bench",
                "X-GitHub-Event": str(spec["event"]),
                "X-GitHub-Delivery": delivery_id,
                "X-Hub-Signature-256": "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest(),
            }
            bodies[delivery_id] = (body, headers)
        body, headers = bodies[delivery_id]
        prepared.append((delivery_id, body, headers))
    return prepared


async def _round(session: Any, url: str, prepared: list[tuple[str, bytes, dict[str, str]]],
                 concurrency: int) -> dict[str, Any]:
    """Send one round with ``concurrency`` requests in flight; time it and every request."""
    import aiohttp

    results: list[tuple[str, int, float] | None] = [None] * len(prepared)
    cursor = iter(range(len(prepared)))

    async def worker() -> None:
        for index in cursor:
            delivery_id, body, headers = prepared[index]
            started = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError, OSError):
                status = 0
            results[index] = (delivery_id, status, (time.perf_counter() - started) * 1000)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"elapsed": time.perf_counter() - began, "requests": [r for r in results if r is not None]}


async def _send_all(spec: dict[str, Any]) -> dict[str, Any]:
    """The load process: open the connections, then send each round with ``concurrency`` in flight."""
    import aiohttp

    rounds = [_prepared(spec, int(spec["seed"]) * 1000 + index) for index in range(int(spec.get("rounds", 1)))]
    concurrency = int(spec["concurrency"])
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def warm() -> None:
            async with session.get(str(spec["warmup_url"])) as response:
                await response.read()

        await asyncio.gather(*(warm() for _ in range(concurrency)))
        return {"rounds": [await _round(session, str(spec["url"]), prepared, concurrency) for prepared in rounds]}


def run_load(base: str, *, template: Path, count: int, concurrency: int, seed: int, env: dict[str, str],
             workdir: Path, rounds: int = 1) -> list[LoadResult]:
    """POST the delivery plan ``rounds`` times from a separate load process; one result per round."""
    from bench.services import run_json

    spec = {"url": f"{base}{WEBHOOK_PATH}", "warmup_url": f"{base}/readyz", "secret": SECRET, "event": EVENT,
            "template": str(template), "count": count, "repeats": REPEAT_FRACTION, "concurrency": concurrency,
            "seed": seed, "rounds": rounds}
    spec_path = workdir / f"load-{seed}.json"
    spec_path.write_text(json.dumps(spec))
    data = run_json(["-m", "bench.ingest", "load", str(spec_path)], env=env, workdir=workdir, timeout=_LOAD_TIMEOUT)
    return [LoadResult(float(r["elapsed"]), [(str(d), int(s), float(ms)) for d, s, ms in r["requests"]])
            for r in data["rounds"]]


# Measurements ------------------------------------------------------------------------


def stored_delivery_ids(url: str) -> list[str]:
    """Every ``delivery_id`` row in the inbox (duplicates included)."""
    from sqlalchemy import select

    from agentz_app.store.db import Database
    from agentz_app.store.models import Delivery

    db = Database.from_url(url)
    try:
        with db.read() as session:
            return [str(value) for value in session.scalars(select(Delivery.delivery_id))]
    finally:
        db.dispose()


@dataclass
class Target:
    """A server under load: its process, webhook URL and (for receivers) database."""

    name: str
    service: Service
    base: str
    env: dict[str, str]
    db_url: str | None = None


def launch_noop(workdir: Path) -> Target:
    """Start the no-op server process (not yet ready)."""
    from bench.services import free_port, hermetic_env, start

    env = hermetic_env({})
    port = free_port()
    service = start("noop", ["-m", "bench.ingest", "noop", "--port", str(port)], env=env, workdir=workdir)
    return Target("noop", service, f"http://127.0.0.1:{port}", env)


def launch_receiver_on(db_name: str, db_url: str, workdir: Path) -> Target:
    """Start ``agentz receiver`` on ``db_url`` (not yet ready), without a GitHub App."""
    from bench.services import hermetic_env, launch_receiver

    env = hermetic_env({
        "DATABASE_URL": db_url,
        "GITHUB_WEBHOOK_SECRET": SECRET,
        "STATE_DIR": str(workdir / f"state-{db_name}"),
        "LOG_LEVEL": "warning",
        "LOG_FORMAT": "json",
    })
    service, base = launch_receiver(env, workdir, name=f"receiver-{db_name}")
    return Target(db_name, service, base, env, db_url)


def median_rate(rounds: Sequence[LoadResult]) -> float:
    """The rate of the median round (rounds differ by machine noise, not by work)."""
    rates = sorted(r.rate for r in rounds)
    return rates[len(rates) // 2]


def measure_receiver(target: Target, args: argparse.Namespace, template: Path, workdir: Path,
                     noop: float) -> Figures:
    """The load against a ready receiver, which is stopped afterwards; audited against its database."""
    from bench.services import RssSampler, read_rss_kb

    assert target.db_url is not None
    receiver = target.service
    try:
        idle_kb = read_rss_kb(receiver.pid) or 0
        with RssSampler(receiver.pid) as rss:
            rounds = run_load(target.base, template=template, count=args.deliveries, concurrency=args.concurrency,
                              seed=2, env=target.env, workdir=workdir, rounds=ROUNDS)
        if not receiver.alive():
            raise RuntimeError(f"receiver died during the load:\n{receiver.log_tail()}")
    finally:
        receiver.stop()
    requests = [request for r in rounds for request in r.requests]
    latencies = [latency for _, _, latency in requests]
    rate = median_rate(rounds)
    lost, duplicated = audit(requests, stored_delivery_ids(target.db_url))
    return {
        "db": target.name,
        "deliveries": len(requests),
        "concurrency": args.concurrency,
        "deliveries_per_s": round(rate, 1),
        "p50_ms": round(percentile(latencies, 0.50), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "noop_per_s": round(noop, 1),
        "vs_noop": round(rate / noop, 2) if noop > 0 else 0.0,
        "rss_idle_mb": round(idle_kb / 1024, 1),
        "rss_mb": rss.peak_mb,
        "rejected": sum(1 for _, status, _ in requests if not 200 <= status < 300),
        "lost": lost,
        "duplicated": duplicated,
    }


def _parse(extra: Sequence[str], quick: bool) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench ingest", add_help=False)
    parser.add_argument("--db", choices=["sqlite", "postgres"], action="append")
    parser.add_argument("--deliveries", type=int, default=None)
    parser.add_argument("--concurrency", type=int, default=32)
    args, _ = parser.parse_known_args(list(extra))
    if args.deliveries is None:
        args.deliveries = 600 if quick else 5000
    if args.deliveries < 1:
        parser.error("--deliveries must be at least 1")
    if not 1 <= args.concurrency <= 512:
        parser.error("--concurrency must be between 1 and 512")
    return args


def _postgres_in_background(stack: ExitStack, shared: SharedPostgres | None) -> Callable[[], Callable[[str], str]]:
    """Start PostgreSQL on a thread: the invocation's shared server, or one of its own that the
    stack stops. Returns the wait for it, which gives the function creating a database."""
    if shared is not None:
        shared.start()

        def shared_server() -> Callable[[str], str]:
            shared.wait()
            return shared.create

        return shared_server
    from bench.common import postgres_server

    manager = postgres_server()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-postgres")
    future: Future[Callable[[str], str]] = pool.submit(manager.__enter__)
    pool.shutdown(wait=False)

    def close() -> None:
        if future.exception() is None:
            manager.__exit__(None, None, None)

    stack.callback(close)
    return lambda: future.result(timeout=120)


def _run(args: argparse.Namespace, dbs: Sequence[str], shared: SharedPostgres | None = None) -> list[Figures]:
    from bench.common import postgres_available, sqlite_database
    from bench.services import stop_all, wait_http

    lines: list[Figures] = []
    with ExitStack() as stack:
        # Unwound last: the folder goes after every server using it has stopped.
        workdir = Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="agentz-bench-ingest-", ignore_cleanup_errors=True)))
        # Every server and database starts up front; each load then runs with the
        # others idle, and each server is stopped right after its load.
        postgres = _postgres_in_background(stack, shared) if "postgres" in dbs and postgres_available() else None
        sqlite_url = stack.enter_context(sqlite_database()) if "sqlite" in dbs else None
        targets: list[Target] = []
        stack.callback(lambda: stop_all([target.service for target in targets]))
        targets.append(launch_noop(workdir))
        template = workdir / "payload.json"
        template.write_text(json.dumps(issue_payload_template()))
        if sqlite_url is not None:
            targets.append(launch_receiver_on("sqlite", sqlite_url, workdir))
        if postgres is not None:
            targets.append(launch_receiver_on("postgres", postgres()("ingest"), workdir))
        for target in targets:
            wait_http(f"{target.base}/readyz", target.service)
        noop_target, receivers = targets[0], {target.name: target for target in targets[1:]}
        try:
            noop = median_rate(run_load(noop_target.base, template=template, count=args.deliveries,
                                        concurrency=args.concurrency, seed=1, env=noop_target.env,
                                        workdir=workdir, rounds=ROUNDS))
        finally:
            noop_target.service.stop()
        for db_name in dbs:
            if db_name in receivers:
                lines.append(measure_receiver(receivers[db_name], args, template, workdir, noop))
            else:
                lines.append({"db": db_name, "skipped": "PostgreSQL server binaries not installed"})
    return lines


def scenario(options: BenchOptions) -> list[Figures]:
    """Ingest rate, latency, RSS and correctness on SQLite and PostgreSQL, against a no-op server."""
    args = _parse(options.extra, options.quick)
    return _run(args, args.db or ["sqlite", "postgres"], options.postgres)


def rss_scenario(options: BenchOptions) -> list[Figures]:
    """The SQLite ingest measurement alone (its ``rss_mb`` is the receiver's peak RSS under load)."""
    return _run(_parse(options.extra, options.quick), ["sqlite"], options.postgres)


def main(argv: Sequence[str] | None = None) -> int:
    """Helper process entry point: ``noop --port P`` or ``load SPEC.json``."""
    parser = argparse.ArgumentParser(prog="python -m bench.ingest")
    commands = parser.add_subparsers(dest="command", required=True)
    noop = commands.add_parser("noop", help="serve the no-op webhook handler")
    noop.add_argument("--port", type=int, required=True)
    load = commands.add_parser("load", help="send the deliveries described by a JSON spec")
    load.add_argument("spec", type=Path)
    args = parser.parse_args(argv)
    if args.command == "noop":
        serve_noop(args.port)
        return 0
    result = asyncio.run(_send_all(json.loads(args.spec.read_text())))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
