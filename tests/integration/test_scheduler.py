"""The scheduler against a real database: gates, ranking, slots, fingerprint, debounce, resync."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from agentz_app.config import Settings
from agentz_app.domain.states import LIVE
from agentz_app.scheduling.recheck import apply_skip_label, recheck_before_development
from agentz_app.scheduling.resync import redeliver_failed, resync_repo
from agentz_app.scheduling.service import run_scheduler, schedule_once
from agentz_app.store.db import Database
from agentz_app.store.models import Delivery, Event, IssueComment, IssueSnapshot, PullSnapshot, now
from agentz_app.store.runs import RunQueue
from agentz_app.store.scheduler_state import clear_dirty, dirty_repos, mark_dirty, record_resync, resync_state
from agentz_app.store.trust import save_permission
from tests.fakes import FakeGH, FakeRunner
from tests.waiting import wait_for

REPO = "acme/app"


MAINTAINER = "octocat"


def add_issue(db: Database, number: int, *, repo: str = REPO, **fields: Any) -> None:
    """An open issue, by default opened by a maintainer whose write permission is known."""
    values: dict[str, Any] = {
        "title": f"Issue {number}",
        "body": "Do the thing.",
        "state": "open",
        "labels": [],
        "assignees": [],
        "author": MAINTAINER,
        "updated_at": "2026-01-01T00:00:00Z",
    }
    values.update(fields)
    with db.begin() as session:
        session.add(IssueSnapshot(repo=repo, number=number, **values))
    save_permission(db, repo, MAINTAINER, permission="admin", role_name="admin", at=now())


def verdicts(db: Database, repo: str = REPO) -> dict[int, str | None]:
    with db.read() as session:
        rows = session.scalars(select(IssueSnapshot).where(IssueSnapshot.repo == repo))
        return {row.number: row.verdict for row in rows}


def live_issue_numbers(db: Database) -> list[int]:
    return sorted(run.issue_number for run in RunQueue(db).reads.list_runs(statuses=LIVE))


def events_of_kind(db: Database, kind: str) -> list[Event]:
    with db.read() as session:
        return list(session.scalars(select(Event).where(Event.kind == kind)))


@pytest.fixture
def cfg(settings: Settings) -> Settings:
    return settings.model_copy(update={"max_parallel_tasks": 2, "scheduler_debounce_seconds": 0.3})


async def test_top_ranked_candidates_fill_the_free_slots(db: Database, cfg: Settings) -> None:
    for number in (1, 2, 3):
        add_issue(db, number)
    runner = FakeRunner({"ranking": [
        {"number": 3, "score": 90, "reason": "small"},
        {"number": 1, "score": 70, "reason": "ok"},
        {"number": 2, "score": 20, "reason": "meh"},
    ]})
    reports = await schedule_once(db, cfg, runner)
    assert live_issue_numbers(db) == [1, 3]
    assert verdicts(db) == {1: "queued", 2: "ranked", 3: "queued"}
    by_number = {report.number: report for report in reports}
    assert (by_number[3].rank, by_number[3].score) == (1, 90)
    assert "no free slot" in by_number[2].reason
    assert "### #3:" in runner.prompts[0]
    assert "Title: Issue 3" in runner.prompts[0]
    # The issue state a run came from is kept, so the same label arriving late starts nothing.
    answered = RunQueue(db).reads.requested_since(REPO, 3, "2026-01-01T00:00:00Z")
    assert answered is not None
    assert answered.id == by_number[3].run_id


async def test_unchanged_backlog_costs_no_agent_call(db: Database, cfg: Settings) -> None:
    for number in (1, 2, 3):
        add_issue(db, number)
    runner = FakeRunner()
    await schedule_once(db, cfg, runner)
    await schedule_once(db, cfg, runner)
    await schedule_once(db, cfg, runner)
    assert runner.calls == 1


async def test_ranked_but_unqueued_issue_is_enqueued_when_a_slot_frees(db: Database, cfg: Settings) -> None:
    for number in (1, 2, 3):
        add_issue(db, number)
    await schedule_once(db, cfg, FakeRunner())
    queue = RunQueue(db)
    first = queue.reads.live_run_for_issue(REPO, 1)
    assert first is not None
    queue.moves.cancel(first.id, reason="done elsewhere")
    with db.begin() as session:
        row = session.scalars(select(IssueSnapshot).where(IssueSnapshot.number == 1)).one()
        row.state = "closed"
        row.updated_at = "2026-01-02T00:00:00Z"
    await schedule_once(db, cfg, FakeRunner())
    assert live_issue_numbers(db) == [2, 3]
    assert verdicts(db)[3] == "queued"


async def test_gated_issues_are_recorded_with_their_gate(db: Database, cfg: Settings) -> None:
    add_issue(db, 1, labels=["blocked"])
    add_issue(db, 2, body="Blocked by #1")
    add_issue(db, 3, assignees=["alice"])
    add_issue(db, 4, body="Depends on other/lib#9")
    add_issue(db, 5)
    with db.begin() as session:
        session.add(PullSnapshot(repo=REPO, number=40, state="open", body="Fixes #5", linked_issues=[5]))
    runner = FakeRunner()
    reports = await schedule_once(db, cfg, runner)
    assert verdicts(db) == {
        1: "skipped:block_label",
        2: "skipped:dependency",
        3: "skipped:assigned",
        4: "skipped:dependency",
        5: "skipped:open_pr",
    }
    assert runner.calls == 0
    assert "other/lib#9 (state unknown)" in {r.number: r for r in reports}[4].reason


async def test_closed_dependency_and_comment_dependency(db: Database, cfg: Settings) -> None:
    add_issue(db, 1, state="closed")
    add_issue(db, 2, body="Blocked by #1")
    add_issue(db, 3)
    with db.begin() as session:
        session.add(IssueComment(id=99, repo=REPO, issue_number=3, author="bob", body="Requires #2"))
    await schedule_once(db, cfg, FakeRunner())
    assert verdicts(db)[2] == "queued"
    assert verdicts(db)[3] == "skipped:dependency"


async def test_invalid_output_gets_one_repair_then_nothing_is_enqueued(db: Database, cfg: Settings) -> None:
    add_issue(db, 1)
    runner = FakeRunner("I think #1 is great", {"ranking": [{"number": 77, "score": 5, "reason": "?"}]})
    await schedule_once(db, cfg, runner)
    assert runner.calls == 2
    assert runner.session_ids == [None, "s-1"]
    assert live_issue_numbers(db) == []
    [failure] = events_of_kind(db, "scheduler_failed")
    assert "I think #1 is great" in failure.payload["raw"]
    assert verdicts(db)[1] == "unranked"


async def test_repaired_output_is_used(db: Database, cfg: Settings) -> None:
    add_issue(db, 1)
    runner = FakeRunner({"ranking": [{"number": 1, "score": 500}]}, {"ranking": [{"number": 1, "score": 50}]})
    await schedule_once(db, cfg, runner)
    assert runner.calls == 2
    assert "score" in runner.prompts[1]
    assert live_issue_numbers(db) == [1]


async def test_rejections_are_recorded_and_force_admits_high_risk(db: Database, cfg: Settings) -> None:
    add_issue(db, 1)
    add_issue(db, 2)
    answer = {"ranking": [], "rejected": [
        {"number": 1, "reason": "high_risk: rewrites auth"},
        {"number": 2, "reason": "tracking: epic"},
    ]}
    await schedule_once(db, cfg, FakeRunner(answer))
    assert verdicts(db) == {1: "rejected:high_risk", 2: "rejected:tracking"}
    assert live_issue_numbers(db) == []
    await schedule_once(db, cfg, FakeRunner(answer), force=True)
    assert live_issue_numbers(db) == [1]
    run = RunQueue(db).reads.live_run_for_issue(REPO, 1)
    assert run is not None
    assert run.force


async def test_per_repository_limit_and_batch_size(db: Database, cfg: Settings) -> None:
    for number in (1, 2, 3):
        add_issue(db, number)
        add_issue(db, number, repo="acme/other")
    limited = cfg.model_copy(update={"max_parallel_tasks": 5, "max_parallel_per_repo": 2, "scheduler_batch_size": 1})
    await schedule_once(db, limited, FakeRunner())
    runs = RunQueue(db).reads.list_runs(statuses=LIVE)
    assert sorted((run.repo, run.issue_number) for run in runs) == [("acme/app", 1), ("acme/other", 1)]
    await schedule_once(db, limited, FakeRunner())
    runs = RunQueue(db).reads.list_runs(statuses=LIVE)
    assert sorted((run.repo, run.issue_number) for run in runs) == [
        ("acme/app", 1), ("acme/app", 2), ("acme/other", 1), ("acme/other", 2),
    ]


async def test_stale_snapshots_stop_new_enqueues_but_keep_queued_work(db: Database, cfg: Settings) -> None:
    add_issue(db, 1)
    add_issue(db, 2)
    queued, _ = RunQueue(db).intake.enqueue(REPO, 1)
    old = now() - 10 * cfg.resync_interval_seconds
    with db.begin() as session:
        record_resync(session, REPO, ok=True, at=old)
        record_resync(session, REPO, ok=False, error="GitHubError: 502", at=now())
    runner = FakeRunner()
    await schedule_once(db, cfg, runner)
    assert runner.calls == 0
    assert verdicts(db)[2] == "skipped:stale"
    assert RunQueue(db).reads.get(queued.id).status == "queued"


async def _wait_for(predicate: Any, *, what: str = "the scheduler pass") -> None:
    await wait_for(predicate, timeout=10.0, what=what)


async def test_a_burst_of_dirty_marks_costs_exactly_one_agent_call(sqlite_db: Database, cfg: Settings) -> None:
    db = sqlite_db
    runner = FakeRunner()
    passes: list[int] = []
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_scheduler(db, cfg, runner, stop=stop, poll_seconds=0.05, on_pass=lambda r: passes.append(len(r)))
    )
    await _wait_for(lambda: len(passes) == 1)  # the start-up pass over an empty backlog
    save_permission(db, REPO, MAINTAINER, permission="admin", role_name="admin", at=now())
    for number in range(1, 101):
        with db.begin() as session:
            if number <= 3:
                session.add(IssueSnapshot(repo=REPO, number=number, title=f"Issue {number}", author=MAINTAINER,
                                          updated_at="t1"))
            mark_dirty(session, REPO, reason=f"event {number}")
    await _wait_for(lambda: len(passes) == 2)
    assert runner.calls == 1
    assert live_issue_numbers(db) == [1, 2]
    with db.read() as session:
        assert dirty_repos(session) == {}
    for number in range(20):  # more events, nothing that matters changed
        with db.begin() as session:
            mark_dirty(session, REPO, reason=f"noise {number}")
    await _wait_for(lambda: len(passes) == 3)
    stop.set()
    await task
    assert runner.calls == 1


async def test_a_finished_run_wakes_the_scheduler_to_refill_the_slot(sqlite_db: Database, cfg: Settings) -> None:
    db = sqlite_db
    for number in (1, 2, 3):
        add_issue(db, number)
    passes: list[int] = []
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_scheduler(db, cfg, FakeRunner(), stop=stop, poll_seconds=0.05, on_pass=lambda r: passes.append(1))
    )
    await _wait_for(lambda: len(passes) == 1)
    assert live_issue_numbers(db) == [1, 2]
    run = RunQueue(db).reads.live_run_for_issue(REPO, 2)
    assert run is not None
    RunQueue(db).moves.cancel(run.id, reason="operator")
    await _wait_for(lambda: len(passes) == 2)
    stop.set()
    await task
    assert live_issue_numbers(db) == [1, 3]
    assert verdicts(db)[2] == "skipped:previous_run"


# Resync, redelivery and the pre-development recheck ---------------------------------


def gh_issue(number: int, **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"number": number, "title": f"Issue {number}", "body": "", "state": "open",
                            "labels": [], "assignees": [], "user": {"login": "alice"},
                            "updated_at": "2026-02-01T00:00:00Z"}
    data.update(fields)
    return data


async def test_resync_repairs_snapshots_and_marks_dirty_only_on_change(db: Database) -> None:
    add_issue(db, 1)
    add_issue(db, 2)
    gh = FakeGH(getiter_answers={
        f"/repos/{REPO}/issues": [gh_issue(1, title="Renamed"), gh_issue(5)],
        f"/repos/{REPO}/pulls": [],
    })
    result = await resync_repo(gh, db, REPO)
    assert (result.issues_changed, result.closed) == (2, 1)
    with db.read() as session:
        rows = {row.number: row for row in session.scalars(select(IssueSnapshot))}
        assert REPO in dirty_repos(session)
    assert (rows[1].title, rows[2].state, rows[5].state) == ("Renamed", "closed", "open")
    with db.begin() as session:
        clear_dirty(session, REPO, up_to=now())
    again = await resync_repo(gh, db, REPO)
    assert not again.changed
    with db.read() as session:
        assert dirty_repos(session) == {}
        assert resync_state(session, REPO) is not None


async def test_failed_resync_is_recorded(db: Database) -> None:
    from agentz_app.errors import GitHubError

    gh = FakeGH(getiter_answers={f"/repos/{REPO}/issues": GitHubError(502, "bad gateway")})
    with pytest.raises(GitHubError):
        await resync_repo(gh, db, REPO)
    with db.read() as session:
        cursor = resync_state(session, REPO)
        assert cursor is not None
        assert "502" in cursor.error


async def test_failed_deliveries_we_never_stored_are_redelivered(db: Database) -> None:
    with db.begin() as session:
        session.add(Delivery(delivery_id="known", event="issues", payload="{}"))
    listed = [
        {"id": 1, "guid": "known", "status": "Invalid HTTP Response: 503", "status_code": 503,
         "delivered_at": "2026-03-01T10:00:00Z"},
        {"id": 2, "guid": "lost", "status": "Invalid HTTP Response: 502", "status_code": 502,
         "delivered_at": "2026-03-01T10:00:00Z"},
        {"id": 3, "guid": "fine", "status": "OK", "status_code": 202, "delivered_at": "2026-03-01T10:00:00Z"},
        {"id": 4, "guid": "retried", "status": "failed", "status_code": 500, "delivered_at": "2026-03-01T10:00:00Z"},
        {"id": 5, "guid": "retried", "status": "OK", "status_code": 202, "delivered_at": "2026-03-01T10:01:00Z"},
        {"id": 6, "guid": "ancient", "status": "failed", "status_code": 500, "delivered_at": "2020-01-01T00:00:00Z"},
    ]
    app_gh = FakeGH(getiter_answers={"/app/hook/deliveries": listed})
    since = 1_700_000_000.0  # November 2023
    assert await redeliver_failed(app_gh, since, db=db) == [2]
    assert [call.url for call in app_gh.writes("POST")] == ["/app/hook/deliveries/2/attempts"]


@pytest.mark.parametrize(
    ("issue", "pulls", "expected"),
    [
        (gh_issue(7), [], None),
        (gh_issue(7, state="closed"), [], "closed"),
        (gh_issue(7, assignees=[{"login": "bob"}]), [], "assigned to bob"),
        (gh_issue(7, assignees=[{"login": "agent-z[bot]"}]), [], None),
        (gh_issue(7), [{"number": 8, "state": "open", "body": "Fixes #7", "head": {"ref": "bob/fix"}}], "#8"),
        (gh_issue(7), [{"number": 9, "state": "open", "body": "Fixes #7", "head": {"ref": "agent-z/issue-7-x"}}],
         None),
    ],
)
async def test_recheck_before_development(
    settings: Settings, issue: dict[str, Any], pulls: list[Any], expected: str | None
) -> None:
    gh = FakeGH(getitem_answers={f"/repos/{REPO}/issues/7": issue}, getiter_answers={f"/repos/{REPO}/pulls": pulls})
    reason = await recheck_before_development(gh, settings, REPO, 7, run_branch="agent-z/issue-7-x")
    if expected is None:
        assert reason is None
    else:
        assert reason is not None
        assert expected in reason


async def test_skip_label_is_applied(settings: Settings) -> None:
    gh = FakeGH()
    assert await apply_skip_label(gh, REPO, 7, settings) == "ongoing"
    [call] = gh.writes()
    assert (call.url, call.data) == (f"/repos/{REPO}/issues/7/labels", {"labels": ["ongoing"]})


def test_schedule_once_command_prints_each_candidate(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from agentz_app.cli import cli
    from agentz_app.store.migrate import migrate

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    database = Database.from_url(url)
    migrate(database)
    add_issue(database, 1)
    add_issue(database, 2, labels=["blocked"])
    add_issue(database, 3, author="mallory")  # an outsider, whom nobody vouched for
    database.dispose()
    steps = tmp_path / "steps.json"
    steps.write_text(json.dumps({"steps": [
        {"role": "scheduler", "json": {"ranking": [{"number": 1, "score": 80, "reason": "clear and small"}]}},
    ]}))
    env = {"DATABASE_URL": url, "DEFAULT_BACKEND": "scripted", "SCRIPTED_AGENT_FILE": str(steps),
           "STATE_DIR": str(tmp_path / "state"), "LOG_FORMAT": "json", "LOG_LEVEL": "error"}
    result = CliRunner().invoke(cli, ["--env-file", str(tmp_path / "none.env"), "schedule-once", "--json"], env=env)
    assert result.exit_code == 0, result.output
    reports = {item["number"]: item for item in json.loads(result.output)}
    assert (reports[1]["verdict"], reports[1]["rank"], reports[1]["score"]) == ("queued", 1, 80)
    assert reports[2]["verdict"] == "skipped:block_label"
    assert reports[3]["verdict"] == "skipped:untrusted_author"
    assert "@mallory" in reports[3]["reason"]
    again = CliRunner().invoke(cli, ["--env-file", str(tmp_path / "none.env"), "schedule-once"], env=env)
    assert again.exit_code == 0, again.output
    assert "acme/app#1 queued" in again.output
    assert "acme/app#2 skipped:block_label" in again.output
    assert "acme/app#3 skipped:untrusted_author: opened by @mallory" in again.output
