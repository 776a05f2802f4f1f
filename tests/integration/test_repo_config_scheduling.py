"""The scheduler applies each repository's labels and parallelism from its stored .github/agent-z.yml."""

from __future__ import annotations

from agentz_app.config import Settings
from agentz_app.domain.states import LIVE
from agentz_app.repo_config import RepoConfig, parse_config, save_config
from agentz_app.scheduling.service import schedule_once
from agentz_app.store.db import Database
from agentz_app.store.runs import RunQueue
from tests.fakes import FakeRunner
from tests.integration.test_scheduler import add_issue

OTHER = "acme/other"


def live(db: Database) -> list[tuple[str, int]]:
    return sorted((run.repo, run.issue_number) for run in RunQueue(db).reads.list_runs(statuses=LIVE))


async def test_a_repository_blocks_its_own_label_and_runs_fewer_at_once(db: Database, settings: Settings) -> None:
    for number in (1, 2, 3):
        add_issue(db, number, labels=["wip"] if number == 1 else [])
        add_issue(db, number, repo=OTHER, labels=["wip"] if number == 1 else [])
    save_config(db, "acme/app", commit_sha="c" * 40, blob_sha="b" * 40,
                config=parse_config("parallelism: 1\nlabels:\n  block: [wip]\n"))
    host = settings.model_copy(update={"max_parallel_tasks": 10, "max_parallel_per_repo": 2})
    await schedule_once(db, host, FakeRunner())
    await schedule_once(db, host, FakeRunner())
    assert live(db) == [("acme/app", 2), (OTHER, 1), (OTHER, 2)]


async def test_a_repository_cannot_run_more_at_once_than_the_host_allows(db: Database, settings: Settings) -> None:
    for number in (1, 2, 3):
        add_issue(db, number)
    save_config(db, "acme/app", commit_sha="c" * 40, blob_sha="b" * 40, config=RepoConfig(parallelism=10))
    host = settings.model_copy(update={"max_parallel_tasks": 10, "max_parallel_per_repo": 1})
    await schedule_once(db, host, FakeRunner())
    await schedule_once(db, host, FakeRunner())
    assert live(db) == [("acme/app", 1)]


async def test_a_repository_chooses_its_scheduler_backend(db: Database, settings: Settings) -> None:
    add_issue(db, 1)
    add_issue(db, 1, repo=OTHER)
    save_config(db, "acme/app", commit_sha="c" * 40, blob_sha="b" * 40,
                config=parse_config("backends:\n  scheduler: codex\n"))
    built: list[str] = []
    per_repo = FakeRunner()

    def runner_for(backend: str) -> FakeRunner:
        built.append(backend)
        return per_repo

    host_runner = FakeRunner()
    await schedule_once(db, settings, host_runner, runner_for=runner_for)

    assert built == ["codex"]
    assert len(per_repo.prompts) == 1
    assert "### #1:" in per_repo.prompts[0]  # acme/app's pass
    assert len(host_runner.prompts) == 1  # the other repository keeps the host's backend
