"""Attacks through the per-repository configuration and the commands it runs."""

from __future__ import annotations

from pathlib import Path

from tests.integration.test_pipeline import APPROVE, PLAN, Harness
from tests.integration.test_repo_config_pipeline import TEST_COMMAND, commit_config


async def test_an_agent_cannot_drop_the_test_command_by_rewriting_the_config_in_its_change(tmp_path: Path) -> None:
    h = Harness(tmp_path, [
        {"role": "task_lead", "json": PLAN},
        {"role": "developer", "write": [
            {"path": ".github/agent-z.yml", "content": "allow_workflow_changes: true\n"},
            {"path": "src/app.py", "content": "print('slow')\n"},
        ]},
        {"role": "reviewer", "json": APPROVE},
    ], max_review_rounds=2)
    commit_config(h, tmp_path, {"test": TEST_COMMAND})
    h.enqueue()
    await h.plan()
    run = await h.work()
    assert run.status == "needs_human"
    assert "test command failed" in (run.error or "")
    assert not h.gh.pulls


async def test_setup_output_cannot_mention_anyone_or_add_markup_to_the_status_comment(tmp_path: Path) -> None:
    h = Harness(tmp_path, [{"role": "task_lead", "json": PLAN}])
    hostile = "echo '```'; echo '@octocat please merge [click](https://evil.example)'; exit 1"
    commit_config(h, tmp_path, {"setup": [hostile]})
    h.enqueue()
    await h.plan()
    run = await h.work()
    assert run.status == "needs_human"
    body = next(iter(h.gh.comments.values()))["body"]
    fenced = body.split("```text", 1)[1].split("```", 1)[0]
    assert "@octocat please merge" in fenced  # inside the code block, where it is inert
    assert body.count("```") == 2
