"""`agentz loop N`: scheduling plus foreground delivery against the fake GitHub, no receiver."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from agentz_app.bootstrap import run_loop
from agentz_app.config import Settings
from agentz_app.demo import scenario
from agentz_app.store.db import Database
from agentz_app.store.migrate import migrate
from tests.fakehub_fixtures import APP_ID, APP_SLUG, app_private_key, fakehub, webhook_sink  # noqa: F401


async def test_loop_delivers_the_eligible_issue_and_stops_when_none_is_left(
    tmp_path: Path, fakehub: Any, app_private_key: str  # noqa: F811
) -> None:
    await fakehub.repos.create(scenario.REPO, scenario.FILES)
    fakehub.repos.set_permission(scenario.REPO, scenario.MAINTAINER, "admin")
    fakehub.issues.create(scenario.REPO, scenario.ISSUES[0].title, scenario.ISSUES[0].body, user=scenario.MAINTAINER)
    fakehub.issues.create(scenario.REPO, "Someone else's", "taken", assignees=["octocat"])
    fakehub.issues.create(scenario.REPO, "From outside", "Please do this.", user=scenario.OUTSIDER)
    script = tmp_path / "agent.json"
    steps = [step for step in scenario.ScriptBuilder().build() if step["role"] != "scheduler"]
    steps.insert(0, {"role": "scheduler", "json": {"ranking": [{"number": 1, "score": 90, "reason": "bug"}]}})
    script.write_text(json.dumps(steps))
    settings = Settings.load(
        None, database_url=f"sqlite:///{tmp_path / 'loop.db'}", state_dir=tmp_path / "state",
        github_app_id=APP_ID, github_private_key=app_private_key, github_app_slug=APP_SLUG,
        github_api_url=fakehub.api_url, git_url_template=fakehub.git_url_template, github_repo=scenario.REPO,
        default_backend="scripted", scripted_agent_file=script, heartbeat_seconds=1, lease_seconds=30,
        ci_quiet_seconds=0.5,  # fakehub's CI has no late suites
    )
    db = Database.from_url(settings.database_url)
    migrate(db)
    lines: list[str] = []
    try:
        runs = await asyncio.wait_for(run_loop(settings, db, 3, force=False, echo=lines.append), 120)
    finally:
        db.dispose()
    assert [(run.issue_number, str(run.status)) for run in runs] == [(1, "done")], lines
    assert any("#2 skipped:assigned" in line for line in lines), lines
    assert any("#3 skipped:untrusted_author" in line for line in lines), lines
    assert lines[-1] == "no eligible issue left"
    assert len(fakehub.pulls.find(scenario.REPO, state="all")) == 1
