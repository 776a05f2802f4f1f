"""The whole loop under injected faults ends exactly like the clean demo.

Every test runs the demo harness (fakehub in this process, every role as a real
supervised child process, real git, the scripted agent) with faults switched on, and
checks the clean run's end state: deliverable issues done with green CI, the others
with their expected verdicts, exactly one PR and one status comment per delivered
issue, no check run reported twice on one head, and no lease held twice.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from agentz_app.demo import scenario
from agentz_app.demo.report import DemoReport, IssueOutcome
from agentz_app.demo.runner import Demo, DemoOptions
from agentz_app.fakehub.faults import ApiFaultKind, FaultConfig
from agentz_app.store.models import Delivery, Event
from agentz_app.store.owners import parse_owner
from bench.common import count_double_claims, load_events

pytestmark = pytest.mark.slow

TIMEOUT = 90.0


def options(tmp_path: Path, *, faults: FaultConfig | None = None, env: dict[str, str] | None = None,
            issues: tuple[int, ...] | None = None, agent_sleep: float = 0.0) -> DemoOptions:
    return DemoOptions(workspace=tmp_path / "demo", timeout=TIMEOUT, faults=faults, env=env or {}, issues=issues,
                       agent_sleep=agent_sleep)


def by_number(report: DemoReport, number: int) -> IssueOutcome:
    return next(outcome for outcome in report.issues if outcome.number == number)


def count_api_faults(demo: Demo) -> Counter[str]:
    """Count the API faults fakehub answers from now on."""
    assert demo.hub is not None
    injector = demo.hub.faults
    draw = injector.api_fault
    drawn: Counter[str] = Counter()

    def counting(path: str) -> ApiFaultKind | None:
        kind = draw(path)
        if kind is not None:
            drawn[kind] += 1
        return kind

    injector.api_fault = counting  # type: ignore[method-assign]
    return drawn


async def wait_for_labels(demo: Demo) -> None:
    """Let the reporter finish: a label change refused by an injected fault is retried after a pause."""
    assert demo.hub is not None
    hub = demo.hub

    def cleared() -> bool:
        return all(not {label["name"] for label in hub.issues.get(scenario.REPO, number)["labels"]}
                   & {"ongoing", "agent-z:running", "agent-z:queued"} for number in demo.options.deliverable())

    await demo.wait_for(cleared, timeout=45.0, interval=0.5)


def assert_clean_end_state(demo: Demo, report: DemoReport) -> None:
    """The clean demo's outcome, and nothing done twice."""
    expected = {issue.number: issue.expected for issue in demo.options.seeded()}
    delivered = set(demo.options.deliverable())
    for outcome in report.issues:
        assert outcome.verdict == expected[outcome.number], outcome
        if outcome.number in delivered:
            assert outcome.run_status == "done", outcome
            assert outcome.check_runs.get("ci") == "success", outcome
            assert outcome.check_runs.get("Agent-Z / plan") == "success", outcome
        else:
            assert outcome.run_status is None, outcome
            assert outcome.pr is None, outcome
    # The review round trip on #1 and the CI-fix loop on #2 still happened.
    if 1 in delivered:
        assert by_number(report, 1).check_runs.get("Agent-Z / review") == "success"
    if 2 in delivered:
        assert by_number(report, 2).check_runs.get("Agent-Z / ci-fix") == "success"
    assert demo.hub is not None
    for number in delivered:
        labels = {label["name"] for label in demo.hub.issues.get(scenario.REPO, number)["labels"]}
        assert not labels & {"ongoing", "agent-z:running", "agent-z:queued"}, (number, labels)
        comments = demo.hub.comments.find(scenario.REPO, number)
        [status] = [c["body"] for c in comments if "<!-- agent-z:status" in c["body"]]
        assert "Done" in status, status
    audit = demo.audit()
    by_issue = {outcome.number: outcome for outcome in report.issues}
    assert audit.pulls == {number: [by_issue[number].pr] for number in delivered}
    assert audit.status_comments == {number: int(number in delivered) for number in expected}
    assert audit.duplicate_checks == []
    assert count_double_claims(load_events(demo.env["DATABASE_URL"])) == 0


async def test_duplicate_reordered_deliveries_and_server_errors_change_nothing(tmp_path: Path) -> None:
    faults = FaultConfig(seed=20240601, duplicate_rate=0.3, out_of_order_rate=0.3, server_error_rate=0.2)
    async with Demo(options(tmp_path, faults=faults)) as demo:
        faulted = count_api_faults(demo)
        await demo.seed()
        ok = await demo.wait_delivered()
        assert await demo.settle()
        report = demo.report(ok)
        assert ok, report
        await wait_for_labels(demo)
        assert_clean_end_state(demo, report)
        assert demo.hub is not None
        # The faults really happened: 502s were answered, deliveries came twice.
        assert faulted["server_error"] >= 5
        guids = [d["guid"] for d in demo.hub.state.data["deliveries"].values() if d["status"] == "OK"]
        assert len(guids) > len(set(guids))


async def test_secondary_rate_limits_and_dropped_deliveries_are_recovered(tmp_path: Path) -> None:
    faults = FaultConfig(seed=7, secondary_limit_rate=0.08, retry_after_seconds=1, drop_rate=0.25)
    env = {"RESYNC_INTERVAL_SECONDS": "2"}
    async with Demo(options(tmp_path, faults=faults, env=env)) as demo:
        faulted = count_api_faults(demo)
        await demo.seed()
        ok = await demo.wait_delivered()
        assert demo.hub is not None
        assert demo.db is not None
        hub, db = demo.hub, demo.db

        def dropped() -> set[str]:
            return {d["guid"] for d in hub.state.data["deliveries"].values() if d["status"] == "failed to connect"}

        def stored(guids: set[str]) -> set[str]:
            with db.read() as session:
                return set(session.scalars(select(Delivery.delivery_id).where(Delivery.delivery_id.in_(guids))))

        # Every dropped delivery reaches the inbox through GitHub's redelivery.
        assert await demo.wait_for(lambda: stored(dropped()) == dropped(), timeout=30)
        assert await demo.settle()
        report = demo.report(ok)
        assert ok, report
        await wait_for_labels(demo)
        assert_clean_end_state(demo, report)
        assert dropped(), "the seeded faults dropped no delivery"
        assert faulted["secondary_limit"] >= 3
        redelivered = {d["guid"] for d in hub.state.data["deliveries"].values() if d["redelivery"]}
        assert dropped() <= redelivered


async def test_worker_killed_after_its_checkpoint_is_resumed_without_duplicates(tmp_path: Path) -> None:
    env = {"LEASE_SECONDS": "4", "HEARTBEAT_SECONDS": "1", "RECONCILE_INTERVAL_SECONDS": "1"}
    async with Demo(options(tmp_path, issues=(1, 2), env=env, agent_sleep=0.5)) as demo:
        await demo.seed()

        def reviewing() -> bool:  # the developer's work is checkpointed by then
            return any(str(run.status) == "reviewing" and run.lease_owner for run in demo.runs().values())

        assert await demo.wait_for(reviewing, timeout=60, interval=0.05)
        victim = next(run for run in demo.runs().values() if str(run.status) == "reviewing" and run.lease_owner)
        assert victim.lease_owner is not None
        owner = parse_owner(victim.lease_owner)
        name = demo.name_of(owner.pid)
        assert name is not None
        assert name.startswith("worker-")
        assert demo.kill(name) == owner.pid

        ok = await demo.wait_delivered()
        assert await demo.settle()
        report = demo.report(ok)
        assert ok, report
        await wait_for_labels(demo)
        assert_clean_end_state(demo, report)
        run = demo.runs()[victim.issue_number]
        assert run.attempt > victim.attempt
        assert demo.db is not None
        with demo.db.read() as session:
            events = list(session.scalars(select(Event).where(Event.run_id == run.id).order_by(Event.id)))
        recovered = [e for e in events if e.payload.get("actor") == "reconciler"
                     and (e.from_status, e.to_status) == ("reviewing", "ready")]
        assert len(recovered) == 1, [(e.kind, e.from_status, e.to_status, e.payload) for e in events]
        assert str(owner.pid) in str(recovered[0].payload.get("reason"))
        assert [e.kind for e in events].count("claimed") >= 2
