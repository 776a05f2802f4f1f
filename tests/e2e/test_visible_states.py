"""GitHub shows every run state, end to end: fakehub, every role as a child process, the scripted agent.

A maintainer's command is acknowledged within seconds (👀 and a status comment), the
delivered pull request asks that maintainer for a review, and a run cancelled from the
command line or by command leaves GitHub consistent: labels cleared, the status comment
saying why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from agentz_app.cli import cli
from agentz_app.demo import scenario
from agentz_app.demo.runner import Demo, DemoOptions
from bench.writes_per_pr import ACK_TIMEOUT, CANCELLED_TITLE, cancelled_run_figures, demo_script

pytestmark = pytest.mark.slow

TIMEOUT = 120.0
WORK_LABELS = {"ongoing", "agent-z:running", "agent-z:queued"}


def options(tmp_path: Path) -> DemoOptions:
    # No issue is eligible for auto mode: every run here is started by a person.
    return DemoOptions(workspace=tmp_path / "demo", timeout=TIMEOUT, issues=(1,), script=demo_script(),
                       env={"SCHEDULER_ELIGIBLE_LABELS": "agent-z:never"})


def status_comments(demo: Demo, number: int) -> list[str]:
    assert demo.hub is not None
    return [str(c["body"]) for c in demo.hub.comments.find(scenario.REPO, number)
            if "<!-- agent-z:status" in str(c["body"])]


def status_comment(demo: Demo, number: int) -> str:
    [body] = status_comments(demo, number)
    return body


def labels(demo: Demo, number: int) -> set[str]:
    assert demo.hub is not None
    return {label["name"] for label in demo.hub.issues.get(scenario.REPO, number)["labels"]}


async def test_a_commanded_run_is_acknowledged_delivered_and_asks_its_requester_for_review(tmp_path: Path) -> None:
    async with Demo(options(tmp_path)) as demo:
        hub = demo.hub
        assert hub is not None
        await demo.seed()
        comment = hub.comments.create(scenario.REPO, 1, "/agent-z run", user=scenario.MAINTAINER)

        def acknowledged() -> bool:
            eyes = [r for r in hub.state.data["reactions"].values()
                    if r.get("comment_id") == comment["id"] and r["content"] == "eyes"]
            return bool(eyes) and any("<!-- agent-z:status" in str(c["body"])
                                      for c in hub.comments.find(scenario.REPO, 1))

        assert await demo.wait_for(acknowledged, timeout=ACK_TIMEOUT)
        assert await demo.wait_delivered()
        assert await demo.settle(quiet=2.0)
        run = demo.runs()[1]
        assert run.status == "done"
        assert run.pr_number is not None
        assert run.requested_by == scenario.MAINTAINER
        pull = await hub.pulls.get(scenario.REPO, run.pr_number)
        assert [user["login"] for user in pull["requested_reviewers"]] == [scenario.MAINTAINER]
        assert "✅ Done" in status_comment(demo, 1)
        assert not labels(demo, 1) & WORK_LABELS

        # Started and cancelled by command: four writes (two 👀, the comment and its edit).
        figures = await cancelled_run_figures(demo)
        cancelled = next(n for n, r in demo.runs().items() if r.title == CANCELLED_TITLE)
        body = status_comment(demo, cancelled)
        assert "🚫 Cancelled" in body
        assert f"cancelled by @{scenario.MAINTAINER}" in body
        assert not labels(demo, cancelled) & WORK_LABELS
        assert figures["cancelled_run_writes"] <= 4


async def test_a_run_cancelled_from_the_command_line_is_shown_cancelled(tmp_path: Path) -> None:
    async with Demo(options(tmp_path)) as demo:
        hub = demo.hub
        assert hub is not None
        assert demo.db is not None
        await demo.seed()
        hub.comments.create(scenario.REPO, 1, "/agent-z run", user=scenario.MAINTAINER)

        def working() -> bool:
            run = demo.runs().get(1)
            return run is not None and run.status in ("developing", "reviewing", "fixing", "submitting",
                                                      "waiting_checks") and "agent-z:running" in labels(demo, 1)

        assert await demo.wait_for(working, timeout=TIMEOUT)
        env: dict[str, Any] = {"DATABASE_URL": str(demo.db.engine.url)}
        result = CliRunner().invoke(cli, ["runs", "cancel", demo.runs()[1].id], env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output

        def shown() -> bool:
            # The status comment may not exist yet: the labels can be shown before it.
            shown_now = status_comments(demo, 1)
            return any("🚫 Cancelled" in body for body in shown_now) and not labels(demo, 1) & WORK_LABELS

        assert await demo.wait_for(shown, timeout=ACK_TIMEOUT)
        assert "cancelled from the command line" in status_comment(demo, 1)
        assert await demo.settle(quiet=2.0)
        run = demo.runs()[1]
        assert run.status == "cancelled"
        for check in hub.state.data["check_runs"].values():
            if check.get("head_sha") == run.head_sha and str(check.get("name", "")).startswith("Agent-Z / "):
                assert check.get("conclusion") == "cancelled", check
