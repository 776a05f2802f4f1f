"""``/metrics`` scraped from a real aiohttp server over a real database."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from pytest_aiohttp import AiohttpClient

from agentz_app.metrics import LEASE_EXPIRED, GitHubMetrics, install_metrics
from agentz_app.store.db import Database
from agentz_app.store.models import Delivery, Event, Process, Run
from agentz_app.supervisor import ProcessSpec, Supervisor
from tests.web_client import AppClient

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _seed(db: Database) -> None:
    with db.begin() as session:
        session.add_all([
            Delivery(delivery_id="d1", event="issues", payload="{}", processed_at=1.0),
            Delivery(delivery_id="d2", event="issues", payload="{}", processed_at=2.0),
            Delivery(delivery_id="d3", event="issues", payload="{}", error="boom", attempts=1),
            Delivery(delivery_id="d4", event="issue_comment", payload="{}"),
            Run(id="r1", repo="o/r", issue_number=1, status="done", cost_usd=1.25, created_at=0.0),
            Run(id="r2", repo="o/r", issue_number=2, status="developing", cost_usd=0.5, created_at=0.0),
            Run(id="r3", repo="o/r", issue_number=3, status="developing", created_at=0.0),
            Process(host="h", name="worker-1", role="worker", state="running"),
            Process(host="h", name="worker-2", role="worker", state="broken"),
        ])
        session.add_all([
            Event(run_id="r1", kind="transition", from_status="queued", to_status="planning", created_at=10.0),
            Event(run_id="r1", kind="transition", from_status="planning", to_status="ready", created_at=40.0),
            Event(run_id="r1", kind="transition", from_status="ready", to_status="developing", created_at=41.0),
            Event(run_id="r1", kind="transition", from_status="developing", to_status="done", created_at=641.0),
            Event(run_id="r2", kind="transition", from_status="queued", to_status="planning", created_at=5.0),
            Event(run_id="r2", kind=LEASE_EXPIRED, from_status=None, to_status=None, created_at=70.0),
            Event(run_id="r2", kind="transition", from_status="planning", to_status="queued", created_at=70.0),
            Event(run_id="r3", kind=LEASE_EXPIRED, created_at=80.0),
        ])


async def _scrape(client: AppClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(await response.text()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def _client(aiohttp_client: AiohttpClient, db: Database, **kwargs: Any) -> AppClient:
    app = web.Application()

    async def webhook(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=202)

    app.router.add_post("/api/github/webhooks", webhook)
    install_metrics(app, db, **kwargs)
    client: AppClient = await aiohttp_client(app)
    return client


async def test_scrape_reports_deliveries_runs_cost_and_lease_expiries(
    aiohttp_client: AiohttpClient, db: Database
) -> None:
    _seed(db)
    samples = await _scrape(await _client(aiohttp_client, db))
    assert samples[("agentz_deliveries", (("event", "issues"), ("outcome", "processed")))] == 2
    assert samples[("agentz_deliveries", (("event", "issues"), ("outcome", "failed")))] == 1
    assert samples[("agentz_deliveries", (("event", "issue_comment"), ("outcome", "pending")))] == 1
    assert samples[("agentz_runs", (("status", "developing"),))] == 2
    assert samples[("agentz_runs", (("status", "done"),))] == 1
    assert samples[("agentz_agent_cost_usd_total", ())] == 1.75
    assert samples[("agentz_lease_expiries_total", ())] == 2
    assert samples[("agentz_processes", (("state", "broken"),))] == 1


async def test_scrape_counts_dead_deliveries(aiohttp_client: AiohttpClient, db: Database) -> None:
    _seed(db)
    with db.begin() as session:
        session.add_all([
            Delivery(delivery_id="dead-1", event="issues", payload="{}", error="boom", attempts=8, dead_at=3.0),
            Delivery(delivery_id="dead-2", event="pull_request", payload="{}", error="boom", attempts=8, dead_at=4.0),
        ])
    samples = await _scrape(await _client(aiohttp_client, db))
    assert samples[("agentz_deliveries_dead", ())] == 2
    assert samples[("agentz_deliveries", (("event", "issues"), ("outcome", "dead")))] == 1
    assert samples[("agentz_deliveries", (("event", "pull_request"), ("outcome", "dead")))] == 1
    assert samples[("agentz_deliveries", (("event", "issues"), ("outcome", "failed")))] == 1  # still retried


async def test_no_dead_deliveries_is_a_zero_not_a_missing_figure(aiohttp_client: AiohttpClient, db: Database) -> None:
    samples = await _scrape(await _client(aiohttp_client, db))
    assert samples[("agentz_deliveries_dead", ())] == 0


async def test_stage_durations_come_from_event_timings(aiohttp_client: AiohttpClient, db: Database) -> None:
    _seed(db)
    samples = await _scrape(await _client(aiohttp_client, db))
    planning = (("stage", "planning"),)
    assert samples[("agentz_stage_duration_seconds_count", planning)] == 2  # r1: 30 s, r2: 65 s
    assert samples[("agentz_stage_duration_seconds_sum", planning)] == 95
    assert samples[("agentz_stage_duration_seconds_bucket", (("le", "30.0"), *planning))] == 1
    assert samples[("agentz_stage_duration_seconds_bucket", (("le", "120.0"), *planning))] == 2
    assert samples[("agentz_stage_duration_seconds_sum", (("stage", "developing"),))] == 600
    assert ("agentz_stage_duration_seconds_count", (("stage", "done"),)) not in samples


async def test_webhook_latency_is_measured_for_webhook_requests_only(
    aiohttp_client: AiohttpClient, db: Database
) -> None:
    client = await _client(aiohttp_client, db)
    for _ in range(3):
        assert (await client.post("/api/github/webhooks", data=b"{}")).status == 202
    await _scrape(client)  # scrapes themselves are not webhook requests
    samples = await _scrape(client)
    assert samples[("agentz_webhook_latency_seconds_count", ())] == 3
    assert samples[("agentz_webhook_latency_seconds_bucket", (("le", "+Inf"),))] == 3


async def test_github_requests_and_rate_limit_of_this_process(aiohttp_client: AiohttpClient, db: Database) -> None:
    github = GitHubMetrics()
    github.on_response("get", "https://api/x", 200, {"X-RateLimit-Remaining": "4999", "X-RateLimit-Limit": "5000"})
    github.on_response("POST", "https://api/y", 201, {"x-ratelimit-remaining": "4998"})
    github.on_response("GET", "https://api/x", 200, {"x-ratelimit-remaining": "4990"})
    github.on_response("GET", "https://api/x", 304, {})
    github.on_response("GET", "https://api/search", 200,
                       {"x-ratelimit-remaining": "29", "x-ratelimit-resource": "search"})
    samples = await _scrape(await _client(aiohttp_client, db, github=github))
    assert samples[("agentz_github_requests_total", (("method", "GET"), ("status", "200")))] == 3
    assert samples[("agentz_github_requests_total", (("method", "POST"), ("status", "201")))] == 1
    assert samples[("agentz_github_requests_total", (("method", "GET"), ("status", "304")))] == 1
    assert samples[("agentz_github_rate_limit_remaining", (("resource", "core"),))] == 4990
    assert samples[("agentz_github_rate_limit_remaining", (("resource", "search"),))] == 29


COUNTING_CHILD = """\
import sys, time
from agentz_app.metrics import GitHubMetrics
github = GitHubMetrics()
headers = {"X-RateLimit-Remaining": sys.argv[3]} if sys.argv[3] else {}
for _ in range(int(sys.argv[2])):
    github.on_response("GET", "https://api/x", 200, headers)
print("counted", flush=True)
while True:
    time.sleep(0.05)
"""


def _counting_spec(tmp_path: Path, name: str, requests: int, remaining: str = "") -> ProcessSpec:
    script = tmp_path / "count.py"
    script.write_text(COUNTING_CHILD)
    return ProcessSpec(name, "worker", (sys.executable, str(script), name, str(requests), remaining))


def _counted(log: Path) -> bool:
    return log.exists() and "counted" in log.read_text()


async def _until_counted(logs: Path, names: list[str]) -> None:
    for _ in range(500):
        if all(_counted(logs / f"{name}.log") for name in names):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("children did not count in time")


async def test_one_scrape_adds_up_the_counters_of_every_supervised_process(
    aiohttp_client: AiohttpClient, sqlite_db: Database, tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "prometheus"
    stale = Supervisor([_counting_spec(tmp_path, "previous", 5)], sqlite_db, tmp_path / "old-logs",
                       poll_interval=0.05, grace_seconds=2.0, metrics_dir=metrics_dir)
    task = asyncio.create_task(stale.run())
    await _until_counted(tmp_path / "old-logs", ["previous"])
    stale.stop()
    await asyncio.wait_for(task, 10)

    logs = tmp_path / "logs"
    sup = Supervisor([_counting_spec(tmp_path, "alpha", 2), _counting_spec(tmp_path, "beta", 1, "4990")],
                     sqlite_db, logs, poll_interval=0.05, grace_seconds=2.0, metrics_dir=metrics_dir)
    task = asyncio.create_task(sup.run())
    try:
        await _until_counted(logs, ["alpha", "beta"])
        samples = await _scrape(await _client(aiohttp_client, sqlite_db, multiproc_dir=metrics_dir))
    finally:
        sup.stop()
        await asyncio.wait_for(task, 10)
    # Two processes' counts in one figure; the previous serve's files were wiped at start.
    assert samples[("agentz_github_requests_total", (("method", "GET"), ("status", "200")))] == 3
    assert samples[("agentz_github_rate_limit_remaining", (("resource", "core"),))] == 4990
    assert samples[("agentz_deliveries_dead", ())] == 0  # the database figures are still there


async def test_scrape_reports_tokens_run_costs_and_agent_calls_by_role(
    aiohttp_client: AiohttpClient, db: Database
) -> None:
    _seed(db)
    with db.begin() as session:
        session.add_all([
            Event(run_id="r1", kind="agent_call", payload={"role": "task_lead", "cost_usd": 0.25, "tokens": 1000}),
            Event(run_id="r1", kind="agent_call", payload={"role": "developer", "cost_usd": 1.0, "tokens": 9000}),
            Event(run_id="r2", kind="agent_call", payload={"role": "developer", "cost_usd": 0.5, "tokens": "x"}),
        ])
        session.get(Run, "r1").tokens = 10000  # type: ignore[union-attr]
    samples = await _scrape(await _client(aiohttp_client, db))
    assert samples[("agentz_agent_tokens_total", ())] == 10000
    assert samples[("agentz_agent_calls_total", (("role", "developer"),))] == 2
    assert samples[("agentz_agent_call_cost_usd_total", (("role", "developer"),))] == 1.5
    assert samples[("agentz_agent_call_tokens_total", (("role", "task_lead"),))] == 1000
    assert samples[("agentz_run_cost_usd_count", ())] == 3
    assert samples[("agentz_run_cost_usd_sum", ())] == 1.75
    assert samples[("agentz_run_cost_usd_bucket", (("le", "1.0"),))] == 2
