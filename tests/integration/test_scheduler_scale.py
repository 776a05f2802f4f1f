"""The incremental scheduler on a real database: stored assessments, bounded prompts, per-repository
debounce with a ceiling, dependency look-ups, installation discovery and the redelivery horizon."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncGenerator, Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from agentz_app.config import Settings
from agentz_app.domain.states import LIVE
from agentz_app.errors import GitHubError
from agentz_app.ingress.installations import discover_repositories
from agentz_app.scheduling.resync import redeliver_failed
from agentz_app.scheduling.service import run_scheduler, schedule_once
from agentz_app.store.db import Database
from agentz_app.store.models import (
    DependencyLookup,
    Installation,
    IssueAssessment,
    IssueComment,
    IssueSnapshot,
    Repository,
)
from agentz_app.store.runs import RunQueue
from agentz_app.store.scheduler_state import mark_dirty
from tests.fakes import FakeClock, FakeGH, FakeGitHubApp, FakeRunner
from tests.integration.test_scheduler import REPO, add_issue, verdicts

INSTALLATION = 5


@pytest.fixture
def cfg(settings: Settings) -> Settings:
    return settings.model_copy(update={"max_parallel_tasks": 2, "scheduler_prompt_candidates": 25})


def numbers_in(prompt: str) -> list[int]:
    return [int(n) for n in re.findall(r"^### #(\d+):", prompt, re.MULTILINE)]


def edit_issue(db: Database, number: int, **fields: Any) -> None:
    with db.begin() as session:
        row = session.scalars(select(IssueSnapshot).where(IssueSnapshot.repo == REPO,
                                                          IssueSnapshot.number == number)).one()
        for name, value in fields.items():
            setattr(row, name, value)


# Stored assessments and bounded prompts -----------------------------------------------


async def test_a_pass_asks_only_about_new_or_changed_issues(db: Database, cfg: Settings) -> None:
    for number in range(1, 61):
        add_issue(db, number, updated_at=f"2026-01-01T00:00:{number:02d}Z")
    runner = FakeRunner()
    await schedule_once(db, cfg, runner)
    assert runner.calls == 3  # 60 candidates, 25 a prompt
    assert sorted(n for prompt in runner.prompts for n in numbers_in(prompt)) == list(range(1, 61))
    assert numbers_in(runner.prompts[0])[0] == 60  # most recent activity first
    await schedule_once(db, cfg, runner)
    assert runner.calls == 3  # nothing changed: no call
    edit_issue(db, 30, body="Now with a reproduction.", updated_at="2026-02-01T00:00:00Z")
    edit_issue(db, 31, updated_at="2026-02-01T00:00:00Z")  # activity without a content change
    with db.begin() as session:
        session.add(IssueComment(id=7, repo=REPO, issue_number=40, author="bob", body="+1"))
    await schedule_once(db, cfg, runner)
    assert runner.calls == 4
    assert sorted(numbers_in(runner.prompts[-1])) == [30, 40]
    assert len(runner.prompts[-1]) < 5_000


async def test_the_queue_is_ranked_from_stored_scores_across_prompts(db: Database, cfg: Settings) -> None:
    for number in range(1, 31):
        add_issue(db, number)

    def score_by_number(prompt: str) -> dict[str, Any]:
        return {"ranking": [{"number": n, "score": 100 - abs(n - 27), "reason": "r"} for n in numbers_in(prompt)]}

    reports = await schedule_once(db, cfg, FakeRunner(score_by_number))
    assert sorted(run.issue_number for run in RunQueue(db).reads.list_runs(statuses=LIVE)) == [26, 27]
    ranks = {report.number: report.rank for report in reports if report.rank is not None}
    assert ranks[27] == 1
    assert ranks[1] == 30
    with db.read() as session:
        stored = {row.number: row.score for row in session.scalars(select(IssueAssessment))}
    assert stored[27] == 100
    assert len(stored) == 30


async def test_a_failed_prompt_keeps_earlier_answers_and_retries_only_its_issues(db: Database, cfg: Settings) -> None:
    for number in range(1, 31):
        add_issue(db, number, updated_at=f"2026-01-01T00:00:{number:02d}Z")
    runner = FakeRunner(FakeRunner.rank_all, "no json", "still no json")
    await schedule_once(db, cfg, runner)
    assert runner.calls == 3
    assert verdicts(db)[30] in ("queued", "ranked")
    assert verdicts(db)[1] == "unranked"
    retry = FakeRunner()
    await schedule_once(db, cfg, retry)
    assert retry.calls == 1
    assert sorted(numbers_in(retry.prompts[0])) == [1, 2, 3, 4, 5]


async def test_assessments_of_closed_issues_are_forgotten(db: Database, cfg: Settings) -> None:
    add_issue(db, 1)
    add_issue(db, 2)
    await schedule_once(db, cfg.model_copy(update={"max_parallel_tasks": 1}), FakeRunner())
    edit_issue(db, 2, state="closed")
    await schedule_once(db, cfg, FakeRunner())
    with db.read() as session:
        assert [row.number for row in session.scalars(select(IssueAssessment))] == [1]


# Debounce with a ceiling, per repository ------------------------------------------------


async def test_a_steady_stream_is_scheduled_by_the_ceiling_and_never_delays_another_repository(
    sqlite_db: Database, cfg: Settings
) -> None:
    db = sqlite_db
    busy, quiet = "acme/busy", "acme/quiet"
    add_issue(db, 1, repo=busy)
    add_issue(db, 1, repo=quiet)
    settings = cfg.model_copy(update={"scheduler_debounce_seconds": 2.0, "scheduler_max_delay_seconds": 10.0})
    clock = FakeClock(1_000.0)
    start, stream_from, stream_until = clock.now, clock.now + 5.0, clock.now + 35.0
    passes: list[tuple[float, set[str]]] = []
    stop = asyncio.Event()
    next_event = stream_from

    async def fake_sleep(seconds: float) -> None:
        nonlocal next_event
        clock.now += seconds
        while next_event <= min(clock.now, stream_until):  # one event every 0.5 s in the busy repository
            with db.begin() as session:
                mark_dirty(session, busy, reason="stream", at=next_event)
                if next_event == stream_from + 1.0:
                    mark_dirty(session, quiet, reason="one change", at=next_event)
            next_event += 0.5
        if clock.now >= stream_until + 3.0:
            stop.set()
        await asyncio.sleep(0)

    await run_scheduler(db, settings, FakeRunner(), stop=stop, poll_seconds=0.25, clock=clock, sleep=fake_sleep,
                        on_pass=lambda reports: passes.append((clock.now, {r.repo for r in reports})))
    assert passes[0][0] - start == pytest.approx(2.0, abs=0.3)  # the start-up pass
    busy_passes = [at for at, repos in passes[1:] if busy in repos]
    quiet_passes = [(at, repos) for at, repos in passes[1:] if quiet in repos]
    # The quiet repository is scheduled 2 s after its one change, alone, while the stream goes on.
    assert [(round(at - stream_from, 1), repos) for at, repos in quiet_passes] == [(3.0, {quiet})]
    # The busy one is scheduled at most 10 s after its first unscheduled change, throughout the stream
    # (the first change after a pass comes 0.5 s later; the loop looks every 0.25 s).
    assert busy_passes
    assert busy_passes[0] - stream_from <= 10.0 + 0.25
    gaps = [later - earlier for earlier, later in itertools.pairwise(busy_passes)]
    assert len(busy_passes) >= 3
    assert max(gaps) <= 10.0 + 0.5 + 0.25


# Dependencies looked up, never unknown forever ------------------------------------------


def github_with(answers: dict[str, Any]) -> tuple[FakeGitHubApp, FakeGH]:
    gh = FakeGH(getitem_answers=answers)
    return FakeGitHubApp(clients={INSTALLATION: gh}), gh


def install_repo(db: Database, name: str = REPO, *, installation: int = INSTALLATION, repo_id: int = 100) -> None:
    with db.begin() as session:
        session.add(Repository(id=repo_id, installation_id=installation, full_name=name))


async def test_a_dependency_missing_from_snapshots_is_looked_up_and_stored(db: Database, cfg: Settings) -> None:
    install_repo(db)
    add_issue(db, 2, body="Depends on #1")  # #1 was closed before the App was installed
    add_issue(db, 3, body="Blocked by other/lib#9")
    github, gh = github_with({f"/repos/{REPO}/issues/1": {"number": 1, "state": "closed"},
                              "/repos/other/lib/issues/9": {"number": 9, "state": "open"}})
    reports = {r.number: r for r in await schedule_once(db, cfg, FakeRunner(), github=github)}
    assert reports[2].verdict == "queued"
    assert reports[3].verdict == "skipped:dependency"
    assert reports[3].reason == "blocked by other/lib#9 (open)"
    with db.read() as session:
        stored = {(row.repo, row.number): (row.state, row.needed_by) for row in session.scalars(
            select(DependencyLookup))}
    assert stored == {(REPO, 1): ("closed", [REPO]), ("other/lib", 9): ("open", [REPO])}
    with db.read() as session:  # the other repository's issue is not a snapshot, so never a candidate
        assert session.scalars(select(IssueSnapshot).where(IssueSnapshot.repo == "other/lib")).first() is None
    await schedule_once(db, cfg, FakeRunner(), github=github)
    assert len(gh.calls) == 2  # remembered: no new request


async def test_an_unreadable_dependency_blocks_with_a_visible_reason(db: Database, cfg: Settings) -> None:
    install_repo(db)
    add_issue(db, 3, body="Depends on secret/vault#4")
    github, _ = github_with({"/repos/secret/vault/issues/4": GitHubError(404, "Not Found")})
    [report] = await schedule_once(db, cfg, FakeRunner(), github=github)
    assert report.verdict == "skipped:dependency"
    assert report.reason == ("blocked by secret/vault#4 (cannot be read: not found or not readable by the App "
                             "(HTTP 404))")
    [again] = await schedule_once(db, cfg, FakeRunner())  # remembered, and shown without GitHub too
    assert again.reason == report.reason
    with db.read() as session:
        row = session.scalars(select(IssueSnapshot).where(IssueSnapshot.number == 3)).one()
    assert row.verdict_reason == report.reason


async def test_a_failed_look_up_leaves_the_dependency_unknown_and_asks_again(db: Database, cfg: Settings) -> None:
    install_repo(db)
    add_issue(db, 3, body="Depends on #1")
    github, gh = github_with({f"/repos/{REPO}/issues/1": GitHubError(502, "bad gateway")})
    [report] = await schedule_once(db, cfg, FakeRunner(), github=github)
    assert report.reason == f"blocked by {REPO}#1 (state unknown)"
    gh.getitem_answers[f"/repos/{REPO}/issues/1"] = {"number": 1, "state": "closed"}
    [report] = await schedule_once(db, cfg, FakeRunner(), github=github)
    assert report.verdict == "queued"


async def test_a_resync_refreshes_old_look_ups_and_wakes_the_dependent_repository(db: Database,
                                                                                  cfg: Settings) -> None:
    from agentz_app.scheduling.lookups import refresh_lookups
    from agentz_app.store.scheduler_state import dirty_repos

    install_repo(db)
    add_issue(db, 3, body="Depends on other/lib#9")
    github, gh = github_with({"/repos/other/lib/issues/9": {"number": 9, "state": "open"}})
    await schedule_once(db, cfg, FakeRunner(), github=github)
    gh.getitem_answers["/repos/other/lib/issues/9"] = {"number": 9, "state": "closed"}
    assert await refresh_lookups(github, db, older_than=0.0) == 0  # nothing that old
    with db.read() as session:
        checked = session.scalars(select(DependencyLookup)).one().checked_at
    assert await refresh_lookups(github, db, older_than=checked + 1) == 1
    with db.read() as session:
        assert REPO in dirty_repos(session)
    [report] = await schedule_once(db, cfg, FakeRunner())
    assert report.verdict == "queued"


# Repository discovery without webhooks ------------------------------------------------


class DiscoveringApp(FakeGitHubApp):
    """The App factory's listing calls, answered from dictionaries."""

    def __init__(self, installations: list[dict[str, Any]], repositories: dict[int, Any]) -> None:
        super().__init__()
        self.installations = installations
        self.repositories = repositories

    async def list_installations(self) -> list[dict[str, Any]]:
        return self.installations

    async def installation_repositories(self, installation_id: int) -> list[dict[str, Any]]:
        answer = self.repositories[installation_id]
        if isinstance(answer, BaseException):
            raise answer
        return list(answer)


def installation(number: int, *, suspended: bool = False) -> dict[str, Any]:
    return {"id": number, "account": {"login": f"org{number}"},
            "suspended_at": "2026-01-01T00:00:00Z" if suspended else None}


def repository(repo_id: int, name: str) -> dict[str, Any]:
    return {"id": repo_id, "full_name": name, "default_branch": "main", "private": False}


def active_repos(db: Database) -> dict[str, int | None]:
    with db.read() as session:
        return {row.full_name: row.installation_id
                for row in session.scalars(select(Repository).where(Repository.active.is_(True)))}


async def test_discovery_reconciles_added_removed_suspended_and_deleted(db: Database) -> None:
    app = DiscoveringApp([installation(1), installation(2)], {
        1: [repository(11, "org1/a"), repository(12, "org1/b")], 2: [repository(21, "org2/c")],
    })
    first = await discover_repositories(app, db)
    assert sorted(first.added) == ["org1/a", "org1/b", "org2/c"]
    assert active_repos(db) == {"org1/a": 1, "org1/b": 1, "org2/c": 2}
    app.repositories[1] = [repository(11, "org1/a"), repository(13, "org1/d")]  # b removed, d added
    app.installations = [installation(1), installation(2, suspended=True)]
    second = await discover_repositories(app, db)
    assert (second.added, second.removed, second.suspended) == (["org1/d"], ["org1/b", "org2/c"], [2])
    assert active_repos(db) == {"org1/a": 1, "org1/d": 1}
    app.installations = [installation(2)]  # installation 1 uninstalled, 2 unsuspended
    third = await discover_repositories(app, db)
    assert third.deleted == [1]
    assert third.added == ["org2/c"]
    assert active_repos(db) == {"org2/c": 2}
    with db.read() as session:
        assert {row.id: (row.suspended, row.deleted) for row in session.scalars(select(Installation))} == {
            1: (False, True), 2: (False, False)}
    assert not (await discover_repositories(app, db)).changed


async def test_a_failed_repository_listing_changes_nothing_for_that_installation(db: Database) -> None:
    app = DiscoveringApp([installation(1)], {1: [repository(11, "org1/a")]})
    await discover_repositories(app, db)
    app.repositories[1] = GitHubError(502, "bad gateway")
    result = await discover_repositories(app, db)
    assert result.failed == [1]
    assert not result.changed
    assert active_repos(db) == {"org1/a": 1}


async def test_discovery_lists_every_page_through_the_app_client(tmp_path: Path, settings: Settings,
                                                                 sqlite_db: Database) -> None:
    import aiohttp
    from pydantic import SecretStr

    from agentz_app.fakehub import FakeHub
    from agentz_app.github.app import GitHubApp
    from tests.fakehub_fixtures import APP_ID, make_private_key

    key = make_private_key()
    hub = FakeHub(tmp_path / "hub", app_id=APP_ID, private_key_pem=key)
    await hub.start()
    try:
        for name in ("acme/one", "acme/two", "other/three"):
            await hub.repos.create(name, {"README.md": "hi\n"}, ci_command=None)
        configured = settings.model_copy(update={"github_api_url": hub.api_url, "github_app_id": APP_ID,
                                                 "github_private_key": SecretStr(key)})
        async with aiohttp.ClientSession() as http:
            app = GitHubApp(configured, http)
            result = await discover_repositories(app, sqlite_db)
            assert sorted(result.added) == ["acme/one", "acme/two", "other/three"]
            before = hub.not_modified
            again = await discover_repositories(app, sqlite_db)
            assert not again.changed
            assert hub.not_modified > before  # ETag-cached listings
    finally:
        await hub.stop()


# Redelivery stops at the horizon -------------------------------------------------------


class PagedDeliveries(FakeGH):
    """Deliveries served newest first in pages of two; counts the pages read."""

    def __init__(self, deliveries: list[dict[str, Any]]) -> None:
        super().__init__()
        self.deliveries = deliveries
        self.pages = 0

    async def getiter(self, url: str, url_vars: Mapping[str, Any] | None = None, **_: Any) -> AsyncGenerator[Any, None]:
        for start in range(0, len(self.deliveries), 2):
            self.pages += 1
            for item in self.deliveries[start:start + 2]:
                yield item


async def test_listing_deliveries_stops_once_past_the_horizon(db: Database) -> None:
    deliveries = [
        {"id": 10, "guid": "new-ok", "status": "OK", "status_code": 202, "delivered_at": "2026-03-01T10:05:00Z"},
        {"id": 9, "guid": "lost", "status": "failed", "status_code": 502, "delivered_at": "2026-03-01T10:04:00Z"},
        {"id": 8, "guid": "edge", "status": "failed", "status_code": 500, "delivered_at": "2026-03-01T10:00:00Z"},
    ] + [
        {"id": 7 - n, "guid": f"old-{n}", "status": "failed", "status_code": 500,
         "delivered_at": "2026-02-01T00:00:00Z"} for n in range(7)
    ]
    app_gh = PagedDeliveries(deliveries)
    since = 1_772_359_200.0  # 2026-03-01T10:00:00Z
    assert await redeliver_failed(app_gh, since, db=db) == [9, 8]
    assert app_gh.pages == 2  # the first page past the horizon ends the listing
