"""Claim throughput against peers: Agent-Z, a plain SKIP LOCKED loop and pgqueuer on one PostgreSQL.

``python -m bench claims --peers [--workers 8] [--jobs 2000] [--rounds 3]`` runs, in one
invocation and interleaved round by round, on one ephemeral PostgreSQL server:

- ``agentz`` batch 1: one transaction per claim and one per fenced completion (the claim
  path of ``queue.leases.take`` and ``queue.moves.complete``), and batch 32
  (``queue.moves.complete_many``);
- ``plain``: a minimal loop in raw psycopg, ``SELECT … FOR UPDATE SKIP LOCKED LIMIT 1`` and
  an ``UPDATE`` in one transaction, then a completion fenced by owner and attempt in another;
- ``pgqueuer`` batch 1 and batch 32: its ``dequeue`` and ``log_jobs`` (the ``bench`` extra);
- and Agent-Z batch 1 on SQLite.

Every contender drains ``--jobs`` jobs with ``--workers`` processes in a fresh database.
One line per contender gives the median jobs/s over the rounds; the summary line gives
``ratio_vs_plain`` (Agent-Z batch 1 / plain), ``ratio_vs_pgqueuer_b1``,
``ratio_vs_pgqueuer_b32`` (Agent-Z batch 32 / pgqueuer batch 32), the SQLite rate and the
double claims found in Agent-Z's event log and the plain loop's attempts.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bench.common import Figures, count_double_claims, load_events

REPO = "bench/peers"
_START_TIMEOUT = 120.0
_ENTRYPOINT = "bench"
_PLAIN_SCHEMA = """
CREATE TABLE plain_jobs (
  id bigserial PRIMARY KEY, status text NOT NULL DEFAULT 'queued', owner text,
  attempt integer NOT NULL DEFAULT 0, completions integer NOT NULL DEFAULT 0
);
CREATE INDEX plain_jobs_queued ON plain_jobs (id) WHERE status = 'queued';
"""
_PLAIN_CLAIM = ("SELECT id, attempt FROM plain_jobs WHERE status = 'queued' ORDER BY id "
                "LIMIT 1 FOR UPDATE SKIP LOCKED")
_PLAIN_LEASE = "UPDATE plain_jobs SET status = 'running', owner = %s, attempt = attempt + 1 WHERE id = %s"
_PLAIN_COMPLETE = ("UPDATE plain_jobs SET status = 'done', completions = completions + 1 "
                   "WHERE id = %s AND owner = %s AND attempt = %s")


@dataclass(frozen=True)
class Contender:
    """One queue implementation at one batch size, on one kind of database."""

    name: str
    batch: int
    db: str = "postgres"

    @property
    def label(self) -> str:
        return f"{self.name}_b{self.batch}" + ("_sqlite" if self.db == "sqlite" else "")


CONTENDERS = (
    Contender("agentz", 1), Contender("plain", 1), Contender("pgqueuer", 1),
    Contender("agentz", 32), Contender("pgqueuer", 32), Contender("agentz", 1, "sqlite"),
)


# Worker bodies (each runs in its own process) ------------------------------------


def _agentz_worker(url: str, name: str, batch: int) -> Callable[[], int]:
    from agentz_app.domain.states import Status
    from agentz_app.store.db import Database
    from agentz_app.store.runs import RunQueue

    queue = RunQueue(Database.from_url(url, pool_size=1))

    def drain() -> int:
        done = 0
        while True:
            claimed = queue.leases.take(name, statuses=(Status.QUEUED,), target=Status.PLANNING, limit=batch)
            if not claimed:
                return done
            if batch == 1:
                queue.moves.complete(claimed[0].lease, Status.CANCELLED, event={"reason": "benchmark complete"})
                done += 1
            else:
                moved, _ = queue.moves.complete_many([c.lease for c in claimed], Status.CANCELLED,
                                                     event={"reason": "benchmark complete"})
                done += len(moved)

    return drain


def _plain_worker(url: str, name: str, batch: int) -> Callable[[], int]:
    import psycopg

    connection = psycopg.connect(url)

    def drain() -> int:
        done = 0
        with connection:
            while True:
                with connection.transaction():
                    row = connection.execute(_PLAIN_CLAIM).fetchone()
                    if row is not None:
                        connection.execute(_PLAIN_LEASE, (name, row[0]))
                if row is None:
                    return done
                with connection.transaction():
                    connection.execute(_PLAIN_COMPLETE, (row[0], name, row[1] + 1))
                done += 1

    return drain


def _pgqueuer_worker(url: str, name: str, batch: int) -> Callable[[], int]:
    def drain() -> int:
        return asyncio.run(_pgqueuer_drain(url, batch))

    return drain


async def _pgqueuer_drain(url: str, batch: int) -> int:
    import psycopg
    from pgqueuer.queries import EntrypointExecutionParameter, Queries
    from pgqueuer.types import QueueEntrypoint, QueueManagerId

    connection = await psycopg.AsyncConnection.connect(url, autocommit=True)
    queries = Queries.from_psycopg_connection(connection)
    manager = QueueManagerId(uuid.uuid4())
    entrypoints = {QueueEntrypoint(_ENTRYPOINT): EntrypointExecutionParameter(concurrency_limit=0)}
    done = 0
    try:
        while True:
            jobs = await queries.dequeue(batch, entrypoints, manager, None, timedelta(seconds=300))
            if not jobs:
                return done
            await queries.log_jobs([(job, "successful", None) for job in jobs])
            done += len(jobs)
    finally:
        await connection.close()


_WORKERS: dict[str, Callable[[str, str, int], Callable[[], int]]] = {
    "agentz": _agentz_worker, "plain": _plain_worker, "pgqueuer": _pgqueuer_worker,
}


def peer_worker(kind: str, url: str, name: str, batch: int, ready: Any, go: Any, results: Any) -> None:
    """Worker process body: connect, wait for the start, drain the queue and report the count."""
    done = 0
    try:
        drain = _WORKERS[kind](url, name, batch)
        ready.release()
        go.wait(_START_TIMEOUT)
        done = drain()
    finally:
        results.put(done)


# Setup and audit (in the parent) ----------------------------------------------------


def _setup(contender: Contender, url: str, jobs: int) -> None:
    if contender.name == "agentz":
        from agentz_app.store.db import Database
        from agentz_app.store.runs import RunQueue

        db = Database.from_url(url)
        try:
            RunQueue(db).intake.enqueue_many(REPO, range(1, jobs + 1), reason="benchmark")
        finally:
            db.dispose()
        return
    import psycopg

    plain_url = url.replace("postgresql+psycopg://", "postgresql://")
    if contender.name == "plain":
        with psycopg.connect(plain_url, autocommit=True) as connection:
            connection.execute(_PLAIN_SCHEMA)
            connection.execute("INSERT INTO plain_jobs (status) SELECT 'queued' FROM generate_series(1, %s)", (jobs,))
        return
    asyncio.run(_pgqueuer_setup(plain_url, jobs))


async def _pgqueuer_setup(url: str, jobs: int) -> None:
    import psycopg
    from pgqueuer.queries import Queries

    connection = await psycopg.AsyncConnection.connect(url, autocommit=True)
    try:
        queries = Queries.from_psycopg_connection(connection)
        await queries.install()
        await queries.enqueue([_ENTRYPOINT] * jobs, [None] * jobs, [0] * jobs)
    finally:
        await connection.close()


def _double_claims(contender: Contender, url: str, jobs: int) -> int:
    """Claims that broke exclusivity: Agent-Z's event audit; the plain loop's jobs claimed or completed twice."""
    if contender.name == "agentz":
        return count_double_claims(load_events(url))
    if contender.name == "plain":
        import psycopg

        with psycopg.connect(url, autocommit=True) as connection:
            row = connection.execute(
                "SELECT count(*) FILTER (WHERE attempt > 1 OR completions > 1) FROM plain_jobs"
            ).fetchone()
        return int(row[0]) if row is not None else 0
    return 0


def measure(contender: Contender, url: str, *, workers: int, jobs: int) -> tuple[float, int]:
    """Fill a fresh database for ``contender`` and time ``workers`` processes draining it: (jobs/s, doubles)."""
    _setup(contender, url, jobs)
    ctx = multiprocessing.get_context("spawn")
    ready, go, results = ctx.Semaphore(0), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=peer_worker, daemon=True,
                    args=(contender.name, url, f"bench:{i}", contender.batch, ready, go, results))
        for i in range(workers)
    ]
    for proc in procs:
        proc.start()
    for _ in procs:
        if not ready.acquire(timeout=_START_TIMEOUT):
            raise RuntimeError(f"{contender.label} workers did not start")
    started = time.perf_counter()
    go.set()
    completed = sum(int(results.get(timeout=600)) for _ in procs)
    elapsed = time.perf_counter() - started
    for proc in procs:
        proc.join(timeout=30)
    if completed != jobs:
        raise RuntimeError(f"{contender.label}: {completed} of {jobs} jobs completed")
    return (completed / elapsed if elapsed > 0 else 0.0), _double_claims(contender, url, jobs)


def _ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 2) if denominator else 0.0


def compare(*, workers: int, jobs: int, rounds: int, contenders: Sequence[Contender] = CONTENDERS) -> list[Figures]:
    """Run every contender ``rounds`` times, interleaved; one line per contender and a summary line.

    The throughput targets are printed, not checked: on a shared 2-core machine the ratios
    move by more than the margins (``--check`` still fails on a double claim)."""
    from bench.common import postgres_server, sqlite_database

    rates: dict[str, list[float]] = {c.label: [] for c in contenders}
    doubles = 0
    with ExitStack() as stack:
        create_pg = stack.enter_context(postgres_server())
        for index in range(rounds):
            for contender in contenders:
                with ExitStack() as per_run:
                    if contender.db == "sqlite":
                        url = per_run.enter_context(sqlite_database())
                    else:
                        url = create_pg(f"peers_{index}_{contender.label}")
                    rate, found = measure(contender, url, workers=workers, jobs=jobs)
                rates[contender.label].append(rate)
                doubles += found
    median = {label: statistics.median(values) for label, values in rates.items() if values}
    lines: list[Figures] = [
        {"contender": label, "workers": workers, "jobs": jobs, "rounds": rounds, "jobs_per_s": round(value, 1),
         "spread": f"{min(rates[label]):.0f}-{max(rates[label]):.0f}"}
        for label, value in median.items()
    ]
    ratios = {
        "ratio_vs_plain": _ratio(median.get("agentz_b1", 0.0), median.get("plain_b1", 0.0)),
        "ratio_vs_pgqueuer_b1": _ratio(median.get("agentz_b1", 0.0), median.get("pgqueuer_b1", 0.0)),
        "ratio_vs_pgqueuer_b32": _ratio(median.get("agentz_b32", 0.0), median.get("pgqueuer_b32", 0.0)),
    }
    sqlite_rate = round(median.get("agentz_b1_sqlite", 0.0), 1)
    summary: Figures = {"summary": "peers", **ratios, "sqlite_claims_per_s": sqlite_rate, "double_claims": doubles}
    return [*lines, summary]
