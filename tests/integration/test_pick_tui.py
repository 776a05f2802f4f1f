"""The interactive picker driven with Textual's pilot: fakehub, the scripted backend, a real SQLite file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from textual.pilot import Pilot
from textual.widgets import DataTable, Log, Static, TextArea

from agentz_app.bootstrap import open_services, picker_for
from agentz_app.cli import cli
from agentz_app.config import Settings
from agentz_app.store.db import Database
from agentz_app.store.migrate import migrate
from agentz_app.store.models import IssueAssessment
from agentz_app.store.runs import RunQueue
from agentz_app.tui.pick import ImpactScreen, filled
from tests.fakehub_fixtures import APP_ID, APP_SLUG, app_private_key, fakehub, webhook_sink  # noqa: F401
from tests.integration.test_pipeline import APP_FILES, APPROVE

REPO = "acme/widgets"
IMPACT = {"summary": "Make speed() faster", "steps": ["change speed()"], "files": ["app.py"], "modules": [],
          "risk": "medium", "questions": ["Should speed() return 2 or 3?"]}
REVISED = {"summary": "Return 3 from speed()", "steps": ["return 3"], "files": ["app.py"], "modules": [],
           "risk": "low"}
THREE = "def speed():\n    return 3\n"


async def until(pilot: Pilot[Any], condition: Callable[[], bool], *, rounds: int = 600) -> None:
    for _ in range(rounds):
        if condition():
            return
        await pilot.pause(0.1)
    output = list(pilot.app.query("#output").first(Log).lines) if pilot.app.query("#output") else []
    assert condition(), output


def settings_for(tmp_path: Path, hub: Any, private_key: str, agent_steps: list[dict[str, Any]]) -> Settings:
    script = tmp_path / "agent.json"
    script.write_text(json.dumps(agent_steps))
    return Settings.load(
        None, database_url=f"sqlite:///{tmp_path / 'pick.db'}", state_dir=tmp_path / "state",
        github_app_id=APP_ID, github_private_key=private_key, github_app_slug=APP_SLUG, github_repo=REPO,
        github_api_url=hub.api_url, git_url_template=hub.git_url_template, default_backend="scripted",
        scripted_agent_file=script, heartbeat_seconds=1, lease_seconds=30, ci_grace_seconds=0.2,
    )


async def test_picking_an_issue_answering_its_impact_questions_ends_in_a_pull_request(
    tmp_path: Path, fakehub: Any, app_private_key: str  # noqa: F811
) -> None:
    await fakehub.repos.create(REPO, APP_FILES, ci_command=None)
    docs = int(fakehub.issues.create(REPO, "Document speed", "Explain speed()")["number"])
    speed = int(fakehub.issues.create(REPO, "Make speed faster", "speed() is too slow")["number"])
    settings = settings_for(tmp_path, fakehub, app_private_key, [
        {"role": "task_lead", "call": 1, "json": IMPACT},
        {"role": "task_lead", "call": 2, "match": "Q1: 3", "json": REVISED},
        {"role": "developer", "call": 1, "match": "Return 3 from speed()",
         "write": [{"path": "app.py", "content": THREE}]},
        {"role": "reviewer", "json": APPROVE},
    ])
    db = Database.from_url(settings.database_url)
    migrate(db)
    with db.begin() as session:  # the Scheduler Agent's stored word on the issues
        session.add_all([
            IssueAssessment(repo=REPO, number=speed, fingerprint="f", outcome="ranked", score=90,
                            reason="small and well specified"),
            IssueAssessment(repo=REPO, number=docs, fingerprint="f", outcome="ranked", score=40, reason="vague"),
        ])
    try:
        async with open_services(settings, db) as services, \
                (app := picker_for(services, ci_poll_seconds=0.1)).run_test(size=(160, 48)) as pilot:
            table = app.query_one("#candidates", DataTable)
            await until(pilot, lambda: table.row_count == 2)  # no snapshots: read from GitHub
            first = [str(cell) for cell in table.get_row_at(0)]
            assert first[0] == str(speed)
            assert first[3] == "90"
            assert first[4] == "small and well specified"

            await pilot.press("enter")
            # The dialog is pushed before it is composed: wait for its content.
            await until(pilot, lambda: isinstance(app.screen, ImpactScreen) and bool(app.screen.query("#impact")))
            shown = str(app.screen.query_one("#impact", Static).render())
            assert "Should speed() return 2 or 3?" in shown
            assert "app.py" in shown
            assert "medium" in shown
            app.screen.query_one("#answers", TextArea).text = "Q1: 3, keep the signature"
            await until(pilot, lambda: app.screen.query_one("#develop").region.area > 0)  # laid out: clickable
            await pilot.click("#develop")
            await until(pilot, lambda: not isinstance(app.screen, ImpactScreen))

            await until(pilot, lambda: app.outcome is not None)
            lines = list(app.query_one("#output", Log).lines)
    finally:
        db.dispose()
    run = app.outcome
    assert run is not None, lines
    assert run.status == "done", lines
    assert run.pr_number is not None
    assert any(line.endswith(f"/{REPO}/pull/{run.pr_number}") for line in lines), lines
    assert any(line.strip() == "developing" for line in lines)  # live stage output
    assert len(fakehub.pulls.find(REPO, state="all")) == 1
    db = Database.from_url(settings.database_url)
    try:
        kinds = [event.kind for event in RunQueue(db).reads.events(run.id)]
        stored = RunQueue(db).reads.get(run.id)
    finally:
        db.dispose()
    assert "impact" in kinds
    assert "operator_answers" in kinds
    # Planning, the answers and development share one Task Lead session.
    assert stored.plan is not None
    assert stored.plan["summary"] == "Return 3 from speed()"
    assert stored.session_id is not None


def test_unanswered_question_lines_are_dropped_from_the_answer() -> None:
    assert filled("Q1: 3\nQ2:\n  \nalso rename it") == "Q1: 3\nalso rename it"
    assert filled("Q1: \nQ2:") == ""


def test_without_a_terminal_agentz_prints_its_help() -> None:
    result = CliRunner().invoke(cli, [])
    assert result.exit_code == 0
    assert "Usage:" in result.output
    assert "pick an issue" in result.output
