"""Prometheus metrics for ``GET /metrics``.

Each aiohttp app gets its own :class:`CollectorRegistry` (no global registry).
Figures that describe shared state (deliveries, runs, stage durations, agent calls and
cost, lease expiries, processes) are read from the database at scrape time by
:class:`DatabaseCollector`, so any one receiver reports for every process and host.

Figures that only the process doing the work sees — GitHub responses by method and
status with the last rate-limit reading (:class:`GitHubMetrics`), the webhook latency
histogram — are ``prometheus_client`` metrics. Under ``agentz serve`` every child runs
in ``prometheus_client``'s multiprocess mode: the supervisor wipes
``PROMETHEUS_MULTIPROC_DIR`` at start and hands it to its children, each process writes
its values to its own files there, and ``/metrics`` adds them up with a
:class:`~prometheus_client.multiprocess.MultiProcessCollector` (counters survive a
child's restart until the next ``agentz serve``). A process started on its own keeps
them in memory and serves its own.

Create each of these metrics once per process: in multiprocess mode two objects with
the same name in one process would overwrite each other's file entries.

Lease expiries are the ``events`` rows of kind ``lease_expired`` written by the
reconciler (pruning the events of long-finished runs lowers that counter; Prometheus
reads the drop as a counter reset).
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client import Counter as CounterMetric
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from agentz_app.domain.states import TERMINAL
from agentz_app.store.db import Database
from agentz_app.store.models import Delivery, Event, Process, Run

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LEASE_EXPIRED = "lease_expired"
WEBHOOK_PATH = "/api/github/webhooks"
STAGE_BUCKETS: tuple[float, ...] = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)
RUN_COST_BUCKETS: tuple[float, ...] = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 50)
LATENCY_BUCKETS: tuple[float, ...] = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


# Pure helpers ------------------------------------------------------------------


def stage_durations(rows: Iterable[tuple[str, str, float]]) -> dict[str, list[float]]:
    """Time spent in each status, from ``(run_id, to_status, created_at)`` rows sorted by run then time.

    The time in a status is the gap between the transition into it and the next
    transition of the same run; the current (unfinished) status is not counted.
    """
    durations: dict[str, list[float]] = defaultdict(list)
    previous: tuple[str, str, float] | None = None
    for run_id, status, at in rows:
        if previous is not None and previous[0] == run_id and previous[1] not in TERMINAL:
            durations[previous[1]].append(max(at - previous[2], 0.0))
        previous = (run_id, status, at)
    return dict(durations)


def histogram_buckets(values: Sequence[float], bounds: Sequence[float]) -> list[tuple[str, float]]:
    """Cumulative Prometheus buckets for ``values``, ending with ``+Inf``."""
    ordered = sorted(values)
    buckets: list[tuple[str, float]] = []
    index = 0
    for bound in bounds:
        while index < len(ordered) and ordered[index] <= bound:
            index += 1
        buckets.append((_bound_label(bound), float(index)))
    buckets.append(("+Inf", float(len(ordered))))
    return buckets


def _bound_label(bound: float) -> str:
    return str(float(bound))


def delivery_outcome(processed: bool, has_error: bool, dead: bool = False) -> str:
    """``processed``, ``dead`` (no longer retried), ``failed`` (not processed, with an error) or ``pending``."""
    if processed:
        return "processed"
    if dead:
        return "dead"
    return "failed" if has_error else "pending"


# GitHub request counting ---------------------------------------------------------


def agent_call_families(payloads: Sequence[object]) -> Iterator[Metric]:
    """Agent calls, their cost and tokens by role, from the ``agent_call`` events' payloads."""
    count: Counter[str] = Counter()
    cost: defaultdict[str, float] = defaultdict(float)
    tokens: defaultdict[str, float] = defaultdict(float)
    for payload in payloads:
        if not isinstance(payload, dict):
            continue
        role = str(payload.get("role") or "unknown")
        count[role] += 1
        cost[role] += _non_negative(payload.get("cost_usd"))
        tokens[role] += _non_negative(payload.get("tokens"))
    families: tuple[tuple[str, str, Mapping[str, float]], ...] = (
        ("agentz_agent_calls", "Agent calls by role.", count),
        ("agentz_agent_call_cost_usd", "Agent cost by role, in US dollars.", cost),
        ("agentz_agent_call_tokens", "Agent tokens by role.", tokens),
    )
    for name, documentation, values in families:
        family = CounterMetricFamily(name, documentation, labels=["role"])
        for role in sorted(values):
            family.add_metric([role], float(values[role]))
        yield family


def _non_negative(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if number > 0 else 0.0


class GitHubMetrics:
    """Counts GitHub responses and keeps the last rate-limit reading; hand ``on_response`` to the client."""

    def __init__(self) -> None:
        self.requests = CounterMetric("agentz_github_requests", "GitHub API responses by method and status.",
                                ["method", "status"], registry=None)
        self.rate_limit_remaining = Gauge("agentz_github_rate_limit_remaining",
                                          "Requests left in the current rate-limit window, last reading.",
                                          ["resource"], registry=None, multiprocess_mode="mostrecent")

    @property
    def collectors(self) -> tuple[Collector, ...]:
        """The metrics to register when this process serves its own figures."""
        return (self.requests, self.rate_limit_remaining)

    def on_response(self, method: str, url: str, status: int, headers: Mapping[str, str]) -> None:
        """Record one GitHub response (the ``url`` is not used as a label)."""
        self.requests.labels(method.upper(), str(int(status))).inc()
        lowered = {key.lower(): value for key, value in headers.items()}
        remaining = _as_float(lowered.get("x-ratelimit-remaining"))
        if remaining is not None:
            self.rate_limit_remaining.labels(lowered.get("x-ratelimit-resource") or "core").set(remaining)


@functools.cache
def process_github_metrics() -> GitHubMetrics:
    """This process's GitHub counters: one set per process, as in multiprocess mode a second
    set would overwrite the first's files."""
    return GitHubMetrics()


def _as_float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def multiproc_dir_from_env() -> Path | None:
    """The folder ``prometheus_client`` writes this process's metrics to, if it runs in multiprocess mode.

    ``prometheus_client`` reads ``PROMETHEUS_MULTIPROC_DIR`` from the environment when it is
    first imported, so only the process environment counts (a ``.env`` file is too late).
    """
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def reset_multiproc_dir(path: Path) -> None:
    """Create ``path`` and remove metric files a previous run left there (before any child starts)."""
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)


def mark_process_dead(path: Path, pid: int) -> None:
    """Drop the live gauges of the exited process ``pid`` (its counters keep counting in the sum)."""
    multiprocess.mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]


# Collector -----------------------------------------------------------------------


class DatabaseCollector(Collector):
    """Figures read from the database at scrape time."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[Metric]:
        yield from self._deliveries()
        yield from self._runs()
        yield from self._stages()
        yield from self._processes()

    def _deliveries(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("agentz_deliveries", "Webhook deliveries in the inbox by event and outcome.",
                                   labels=["event", "outcome"])
        facts = (Delivery.event, Delivery.processed_at.is_not(None), Delivery.error.is_not(None),
                 Delivery.dead_at.is_not(None))
        with self.db.read() as session:
            rows = session.execute(select(*facts, func.count()).group_by(*facts)).all()
        counts: Counter[tuple[str, str]] = Counter()
        for event, processed, failed, dead, count in rows:
            counts[(event, delivery_outcome(bool(processed), bool(failed), bool(dead)))] += count
        for (event, outcome), count in sorted(counts.items()):
            family.add_metric([event, outcome], count)
        yield family
        yield GaugeMetricFamily("agentz_deliveries_dead",
                                "Deliveries that failed MAX_DELIVERY_ATTEMPTS times and wait for an operator.",
                                value=sum(count for (_, outcome), count in counts.items() if outcome == "dead"))

    def _runs(self) -> Iterator[Metric]:
        with self.db.read() as session:
            by_status = session.execute(select(Run.status, func.count()).group_by(Run.status)).all()
            cost = session.scalar(select(func.coalesce(func.sum(Run.cost_usd), 0.0)))
            tokens = session.scalar(select(func.coalesce(func.sum(Run.tokens), 0)))
            run_costs = [float(value or 0.0) for value in session.scalars(select(Run.cost_usd))]
            calls = list(session.scalars(select(Event.payload).where(Event.kind == "agent_call")))
            expiries = session.scalar(select(func.count()).select_from(Event).where(Event.kind == LEASE_EXPIRED))
        runs = GaugeMetricFamily("agentz_runs", "Runs by status.", labels=["status"])
        for status, count in sorted(by_status):
            runs.add_metric([status], count)
        yield runs
        yield CounterMetricFamily("agentz_agent_cost_usd", "Agent cost reported by the runners, all runs.",
                                  value=float(cost or 0.0))
        yield CounterMetricFamily("agentz_agent_tokens", "Agent tokens reported by the runners, all runs.",
                                  value=float(tokens or 0))
        per_run = HistogramMetricFamily("agentz_run_cost_usd", "What each run's agent calls cost, in US dollars.")
        per_run.add_metric([], histogram_buckets(run_costs, RUN_COST_BUCKETS), sum(run_costs))
        yield per_run
        yield from agent_call_families(calls)
        yield CounterMetricFamily("agentz_lease_expiries", "Leases the reconciler found expired.",
                                  value=float(expiries or 0))

    def _stages(self) -> Iterator[Metric]:
        with self.db.read() as session:
            rows = session.execute(
                select(Event.run_id, Event.to_status, Event.created_at)
                .where(Event.run_id.is_not(None), Event.to_status.is_not(None))
                .order_by(Event.run_id, Event.created_at, Event.id)
            ).all()
        family = HistogramMetricFamily("agentz_stage_duration_seconds", "Time runs spent in each status.",
                                       labels=["stage"])
        for stage, values in sorted(stage_durations((str(r), str(s), float(t)) for r, s, t in rows).items()):
            family.add_metric([stage], histogram_buckets(values, STAGE_BUCKETS), sum(values))
        yield family

    def _processes(self) -> Iterator[Metric]:
        with self.db.read() as session:
            rows = session.execute(select(Process.state, func.count()).group_by(Process.state)).all()
        family = GaugeMetricFamily("agentz_processes", "Supervised processes by state.", labels=["state"])
        for state, count in sorted(rows):
            family.add_metric([state], count)
        yield family


# aiohttp wiring ------------------------------------------------------------------


class Metrics:
    """One app's registry: the database collector, the webhook latency histogram and GitHub counts.

    With ``multiproc_dir`` the per-process metrics are read from every process's files
    there; without it, from this process's memory.
    """

    def __init__(self, db: Database, *, github: GitHubMetrics | None = None,
                 multiproc_dir: Path | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(DatabaseCollector(db))
        self.webhook_latency = Histogram(
            "agentz_webhook_latency_seconds", "Time to answer a webhook delivery.",
            buckets=LATENCY_BUCKETS, registry=None,
        )
        if multiproc_dir is not None:
            multiprocess.MultiProcessCollector(self.registry, path=str(multiproc_dir))  # type: ignore[no-untyped-call]
            return
        for collector in (self.webhook_latency, *(github.collectors if github is not None else ())):
            self.registry.register(collector)

    def render(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


METRICS_KEY = web.AppKey("agentz_metrics", Metrics)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def metrics_handler(request: web.Request) -> web.Response:
    """``GET /metrics``: scrape the database (in a thread) and render the registry."""
    metrics = request.app[METRICS_KEY]
    body = await asyncio.to_thread(metrics.render)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def latency_middleware(metrics: Metrics, *, path: str = WEBHOOK_PATH) -> Middleware:
    """A middleware observing how long each request to ``path`` takes."""

    @web.middleware
    async def measure(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path != path:
            return await handler(request)
        started = time.perf_counter()
        try:
            return await handler(request)
        finally:
            metrics.webhook_latency.observe(time.perf_counter() - started)

    return measure


def install_metrics(
    app: web.Application,
    db: Database,
    *,
    github: GitHubMetrics | None = None,
    webhook_path: str = WEBHOOK_PATH,
    multiproc_dir: Path | None = None,
) -> Metrics:
    """Add ``GET /metrics`` and the webhook latency middleware to ``app``.

    ``multiproc_dir``: read the per-process metrics of every process from there
    (pass :func:`multiproc_dir_from_env`).
    """
    metrics = Metrics(db, github=github, multiproc_dir=multiproc_dir)
    app[METRICS_KEY] = metrics
    app.middlewares.append(latency_middleware(metrics, path=webhook_path))
    app.router.add_get("/metrics", metrics_handler)
    return metrics
