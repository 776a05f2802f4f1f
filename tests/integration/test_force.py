"""``--force``: what a forced run may skip, and the safety checks it never skips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agentz_app.config import Settings
from agentz_app.scheduling.recheck import issue_problem
from agentz_app.scheduling.service import schedule_once
from agentz_app.store.db import Database
from agentz_app.store.runs import RunQueue
from tests.fakes import FakeRunner
from tests.integration.test_coordinator import REPO
from tests.integration.test_pipeline import HAPPY, Harness
from tests.integration.test_scheduler import REPO as SCHEDULED_REPO
from tests.integration.test_scheduler import add_issue, gh_issue, live_issue_numbers


@pytest.fixture
def cfg(settings: Settings) -> Settings:
    return settings.model_copy(update={"max_parallel_tasks": 2})


def test_a_block_label_stops_development_unless_the_run_is_forced() -> None:
    settings = Settings.load(None, scheduler_block_labels="blocked,on-hold")
    issue = gh_issue(7, labels=[{"name": "On-Hold"}])
    problem = issue_problem(issue, settings)
    assert problem is not None
    assert "'On-Hold'" in problem
    assert "--force" in problem
    assert issue_problem(issue, settings, force=True) is None


@pytest.mark.parametrize(("fields", "expected"), [
    ({"state": "closed"}, "closed"),
    ({"pull_request": {"url": "x"}}, "pull request"),
    ({"assignees": [{"login": "bob"}]}, "assigned to bob"),
])
def test_a_forced_run_still_stops_for_a_closed_pull_request_or_assigned_issue(fields: dict[str, Any],
                                                                              expected: str) -> None:
    problem = issue_problem(gh_issue(7, labels=[{"name": "blocked"}], **fields), Settings.load(None), force=True)
    assert problem is not None
    assert expected in problem


async def developed_despite_block_label(tmp_path: Path, *, force: bool) -> str:
    h = Harness(tmp_path, HAPPY)
    h.gh.labels[7].append("blocked")
    h.queue.intake.enqueue(REPO, 7, installation_id=1, title="Make it faster", force=force)
    await h.plan()
    return str((await h.work()).status)


async def test_an_enqueued_run_on_an_issue_labelled_blocked_is_cancelled_before_development(tmp_path: Path) -> None:
    assert await developed_despite_block_label(tmp_path, force=False) == "cancelled"


async def test_enqueue_force_develops_an_issue_labelled_blocked(tmp_path: Path) -> None:
    assert await developed_despite_block_label(tmp_path, force=True) == "waiting_checks"


async def test_a_forced_scheduling_pass_forces_only_the_high_risk_issues_it_admitted(db: Database,
                                                                                  cfg: Settings) -> None:
    add_issue(db, 1)
    add_issue(db, 2)
    answer = {"ranking": [{"number": 2, "score": 60, "reason": "small"}],
              "rejected": [{"number": 1, "reason": "high_risk: rewrites auth"}]}
    await schedule_once(db, cfg, FakeRunner(answer), force=True)
    assert live_issue_numbers(db) == [1, 2]
    queue = RunQueue(db)
    forced = {number: getattr(queue.reads.live_run_for_issue(SCHEDULED_REPO, number), "force", None)
              for number in (1, 2)}
    assert forced == {1: True, 2: False}
