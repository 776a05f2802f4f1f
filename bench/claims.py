"""Queue claim throughput: separate worker processes claim and complete runs until none are left.

``python -m bench claims [--db sqlite|postgres] [--workers 8] [--jobs 2000]`` prints
``claims: db=sqlite workers=8 jobs=2000 claims_per_s=<n> double_claims=<n> lost=<n> batch=<n>``
for the requested worker count and for 2 workers (``--quick``: only the requested count,
200 jobs), on each database. ``--peers`` compares with a plain SKIP LOCKED loop and pgqueuer
instead (:mod:`bench.claim_peers`). ``--batch N``
claims and completes N runs per transaction (default 32, like batching queues do;
``--batch 1`` measures one transaction per claim and one per completion). Double claims
are counted from the events table; ``lost`` is enqueued runs not completed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from collections.abc import Sequence
from contextlib import ExitStack
from typing import Any

from bench.common import BenchOptions, Figures, count_double_claims, load_events

REPO = "bench/claims"
_START_TIMEOUT = 120.0


def claim_worker(url: str, name: str, batch: int, ready: Any, go: Any, results: Any) -> None:
    """Worker process body: claim → complete until the queue is empty; report the count.

    With ``batch`` > 1 a worker claims up to that many runs per transaction and
    completes them together (each run still gets its own lease and events)."""
    from agentz_app.domain.states import Status
    from agentz_app.store.db import Database
    from agentz_app.store.runs import RunQueue

    db = Database.from_url(url, pool_size=1)
    queue = RunQueue(db)
    done = 0
    ready.release()
    go.wait(_START_TIMEOUT)
    try:
        while True:
            claimed = queue.leases.take(name, statuses=(Status.QUEUED,), target=Status.PLANNING, limit=batch)
            if not claimed:
                break
            if batch == 1:
                queue.moves.complete(claimed[0].lease, Status.CANCELLED, event={"reason": "benchmark complete"})
                done += 1
                continue
            moved, _ = queue.moves.complete_many([c.lease for c in claimed], Status.CANCELLED,
                                                 event={"reason": "benchmark complete"})
            done += len(moved)
    finally:
        results.put((name, done))
        db.dispose()


def measure(url: str, *, workers: int, jobs: int, batch: int | Sequence[int] = 1) -> Figures:
    """Enqueue ``jobs`` runs in ``url`` and time ``workers`` processes draining them.

    ``batch`` is the claim batch size of every worker, or a sequence cycled over the
    workers (to race single claims against batched ones)."""
    from sqlalchemy import func, select

    from agentz_app.domain.states import TERMINAL
    from agentz_app.store.db import Database
    from agentz_app.store.models import Run
    from agentz_app.store.runs import RunQueue

    db = Database.from_url(url)
    try:
        RunQueue(db).intake.enqueue_many(REPO, range(1, jobs + 1), reason="benchmark")
    finally:
        db.dispose()
    ctx = multiprocessing.get_context("spawn")
    ready, go, results = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    sizes = [batch] if isinstance(batch, int) else list(batch)
    procs = [
        ctx.Process(target=claim_worker, args=(url, f"bench:{i}", sizes[i % len(sizes)], ready, go, results),
                    daemon=True)
        for i in range(workers)
    ]
    for proc in procs:
        proc.start()
    for _ in procs:
        if not ready.acquire(timeout=_START_TIMEOUT):
            raise RuntimeError("benchmark workers did not start")
    started = time.perf_counter()
    go.set()
    completed = sum(results.get(timeout=600)[1] for _ in procs)
    elapsed = time.perf_counter() - started
    for proc in procs:
        proc.join(timeout=30)
    events = load_events(url)
    db = Database.from_url(url)
    try:
        with db.read() as session:
            finished = session.scalar(select(func.count()).select_from(Run).where(Run.status.in_(TERMINAL))) or 0
    finally:
        db.dispose()
    return {
        "workers": workers,
        "jobs": jobs,
        "claims_per_s": round(completed / elapsed, 1) if elapsed > 0 else 0.0,
        "double_claims": count_double_claims(events),
        "lost": jobs - min(jobs, int(finished)),
        "batch": batch if isinstance(batch, int) else "/".join(map(str, sizes)),
    }


def _parse(extra: Sequence[str], quick: bool) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench claims", add_help=False)
    parser.add_argument("--db", choices=["sqlite", "postgres"], action="append")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--batch", type=int, default=32, help="runs claimed and completed per transaction")
    parser.add_argument("--peers", action="store_true", help="compare with a plain SKIP LOCKED loop and pgqueuer")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds of --peers")
    args, _ = parser.parse_known_args(list(extra))
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.jobs is None:
        args.jobs = 200 if quick else 2000
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if args.batch < 1:
        parser.error("--batch must be at least 1")
    if args.rounds is None:
        args.rounds = 1 if quick else 3
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def scenario(options: BenchOptions) -> list[Figures]:
    """Claim throughput on SQLite and PostgreSQL, at the requested worker count and (unless quick) at 2."""
    from bench.common import postgres_available, postgres_server, sqlite_database

    args = _parse(options.extra, options.quick)
    if args.peers:
        from bench.claim_peers import compare

        return compare(workers=args.workers, jobs=args.jobs, rounds=args.rounds)
    dbs = args.db or (["sqlite", "postgres"] if postgres_available() else ["sqlite"])
    counts = [args.workers] if options.quick else list(dict.fromkeys([args.workers, 2]))
    lines: list[Figures] = []
    with ExitStack() as stack:
        create_pg = stack.enter_context(postgres_server(options.postgres)) if "postgres" in dbs else None
        for db_name in dbs:
            for index, workers in enumerate(counts):
                if db_name == "sqlite":
                    url = stack.enter_context(sqlite_database())
                else:
                    assert create_pg is not None
                    url = create_pg(f"claims{index}")
                lines.append({"db": db_name, **measure(url, workers=workers, jobs=args.jobs, batch=args.batch)})
    return lines
