"""Prometheus metrics for ``GET /metrics``.

Each aiohttp app gets its own :class:`CollectorRegistry` (no global registry).
Figures that describe shared state (deliveries, runs, stage durations, agent cost,
lease expiries, processes, GitHub requests) are read from the database at scrape
time, so any one receiver reports for every process and host. Only the webhook
latency histogram lives in the receiver's memory.

GitHub requests are counted in the process that makes them by a
:class:`GitHubMetrics` (pass its :meth:`~GitHubMetrics.on_response` to the GitHub
client). It adds its counts into the ``kv`` row ``metrics:github`` every
``flush_seconds``, so counters survive restarts and add up across processes.

Lease expiries are the ``events`` rows of kind ``lease_expired`` written by the
reconciler (pruning the events of long-finished runs lowers that counter; Prometheus
reads the drop as a counter reset).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from agentz_app.domain.states import TERMINAL
from agentz_app.logs import get_logger
from agentz_app.store.db import Database
from agentz_app.store.models import Delivery, Event, KeyValue, Process, Run, now

GITHUB_KEY = "metrics:github"
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


def merge_github_counts(stored: Mapping[str, Any], requests: Mapping[str, int],
                        rate_limits: Mapping[str, Mapping[str, float]]) -> dict[str, Any]:
    """Add request counts to a stored snapshot; keep each resource's newest rate-limit reading."""
    merged_requests = Counter({key: int(value) for key, value in dict(stored.get("requests") or {}).items()})
    merged_requests.update(requests)
    merged_limits = {key: dict(value) for key, value in dict(stored.get("rate_limit") or {}).items()}
    for resource, reading in rate_limits.items():
        old = merged_limits.get(resource)
        if old is None or float(old.get("observed_at", 0)) <= float(reading.get("observed_at", 0)):
            merged_limits[resource] = dict(reading)
    return {"requests": dict(merged_requests), "rate_limit": merged_limits}


# GitHub request counting ---------------------------------------------------------


def agent_call_families(payloads: Sequence[Any]) -> Iterator[Any]:
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
    """Counts GitHub responses and rate-limit readings; hand ``on_response`` to the client.

    With a ``db`` the counts are added into the shared ``kv`` row every
    ``flush_seconds`` (from inside ``on_response``) and on :meth:`flush`.
    """

    def __init__(
        self,
        *,
        db: Database | None = None,
        flush_seconds: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = now,
    ) -> None:
        self.db = db
        self.flush_seconds = flush_seconds
        self.clock = clock
        self.wall_clock = wall_clock
        self._requests: Counter[str] = Counter()
        self._rate: dict[str, dict[str, float]] = {}
        self._last_flush = clock()
        self._log = get_logger("agentz.metrics")

    def on_response(self, method: str, url: str, status: int, headers: Mapping[str, str]) -> None:
        """Record one GitHub response (the ``url`` is not used as a label)."""
        self._requests[f"{method.upper()} {int(status)}"] += 1
        lowered = {key.lower(): value for key, value in headers.items()}
        remaining = _as_float(lowered.get("x-ratelimit-remaining"))
        if remaining is not None:
            resource = lowered.get("x-ratelimit-resource") or "core"
            reading = {"remaining": remaining, "observed_at": self.wall_clock()}
            limit = _as_float(lowered.get("x-ratelimit-limit"))
            if limit is not None:
                reading["limit"] = limit
            self._rate[resource] = reading
        if self.db is not None and self.clock() - self._last_flush >= self.flush_seconds:
            self.flush()

    def snapshot(self) -> dict[str, Any]:
        """Counts not yet flushed, in the stored format."""
        return merge_github_counts({}, self._requests, self._rate)

    def flush(self) -> None:
        """Add the pending counts into the database; on failure keep them for next time."""
        self._last_flush = self.clock()
        if self.db is None or (not self._requests and not self._rate):
            return
        requests, rates = Counter(self._requests), dict(self._rate)
        try:
            _add_github_counts(self.db, requests, rates)
        except Exception as exc:  # metrics must never break a GitHub call
            self._log.warning("cannot store GitHub metrics", error=exc.__class__.__name__)
            return
        self._requests.subtract(requests)
        self._requests = +self._requests
        for resource, reading in rates.items():
            if self._rate.get(resource) is reading:
                del self._rate[resource]


def _as_float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _add_github_counts(db: Database, requests: Mapping[str, int], rates: Mapping[str, Mapping[str, float]]) -> None:
    for attempt in range(2):
        try:
            with db.begin() as session:
                row = session.get(KeyValue, GITHUB_KEY, with_for_update=True)
                if row is None:
                    session.add(KeyValue(key=GITHUB_KEY, value=merge_github_counts({}, requests, rates),
                                         updated_at=now()))
                else:
                    row.value = merge_github_counts(row.value, requests, rates)
                    row.updated_at = now()
            return
        except IntegrityError:
            if attempt:
                raise


def read_github_counts(db: Database) -> dict[str, Any]:
    """The stored GitHub request counts and rate-limit readings."""
    with db.read() as session:
        row = session.get(KeyValue, GITHUB_KEY)
        return dict(row.value) if row is not None else {}


# Collector -----------------------------------------------------------------------


class DatabaseCollector(Collector):
    """Figures read from the database at scrape time."""

    def __init__(self, db: Database, *, github: GitHubMetrics | None = None) -> None:
        self.db = db
        self.github = github

    def collect(self) -> Iterator[Any]:
        yield from self._deliveries()
        yield from self._runs()
        yield from self._stages()
        yield from self._processes()
        yield from self._github()

    def _deliveries(self) -> Iterator[Any]:
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

    def _runs(self) -> Iterator[Any]:
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

    def _stages(self) -> Iterator[Any]:
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

    def _processes(self) -> Iterator[Any]:
        with self.db.read() as session:
            rows = session.execute(select(Process.state, func.count()).group_by(Process.state)).all()
        family = GaugeMetricFamily("agentz_processes", "Supervised processes by state.", labels=["state"])
        for state, count in sorted(rows):
            family.add_metric([state], count)
        yield family

    def _github(self) -> Iterator[Any]:
        if self.github is not None and self.github.db is not None:
            self.github.flush()
        stored = read_github_counts(self.db)
        if self.github is not None and self.github.db is None:
            local = self.github.snapshot()
            stored = merge_github_counts(stored, local["requests"], local["rate_limit"])
        requests = CounterMetricFamily("agentz_github_requests", "GitHub API responses by method and status.",
                                       labels=["method", "status"])
        for key, count in sorted(dict(stored.get("requests") or {}).items()):
            method, _, status = key.partition(" ")
            requests.add_metric([method, status], float(count))
        yield requests
        remaining = GaugeMetricFamily("agentz_github_rate_limit_remaining",
                                      "Requests left in the current rate-limit window, last reading.",
                                      labels=["resource"])
        for resource, reading in sorted(dict(stored.get("rate_limit") or {}).items()):
            remaining.add_metric([resource], float(reading.get("remaining", 0)))
        yield remaining


# aiohttp wiring ------------------------------------------------------------------


class Metrics:
    """One app's registry: the database collector plus the webhook latency histogram."""

    def __init__(self, db: Database, *, github: GitHubMetrics | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(DatabaseCollector(db, github=github))
        self.webhook_latency = Histogram(
            "agentz_webhook_latency_seconds", "Time to answer a webhook delivery.",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )

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


def latency_middleware(metrics: Metrics, *, path: str = WEBHOOK_PATH) -> Any:
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
) -> Metrics:
    """Add ``GET /metrics`` and the webhook latency middleware to ``app``."""
    metrics = Metrics(db, github=github)
    app[METRICS_KEY] = metrics
    app.middlewares.append(latency_middleware(metrics, path=webhook_path))
    app.router.add_get("/metrics", metrics_handler)
    return metrics
