"""The fake GitHub's git side: real pushes to bare repos, push webhooks, simulated CI, merges."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from agentz_app.fakehub import ApiError, FakeHub
from tests.fakehub_fixtures import (
    Delivery,
    WebhookSink,
    app_private_key,
    clone,
    fakehub,
    push_branch,
    run_git,
    webhook_sink,
)

__all__ = ["app_private_key", "fakehub", "webhook_sink"]  # fixtures used by name

REPO = "acme/widgets"
PASSING = {"widgets.py": "def double(x):\n    return 2 * x\n",
           "test_widgets.py": "from widgets import double\n\n\ndef test_double():\n    assert double(2) == 4\n"}
BOT = "agent-z-test[bot]"


def on_sha(sha: str) -> Callable[[Delivery], bool]:
    """Match check_run deliveries for ``sha``."""
    return lambda d: bool(d.payload["check_run"]["head_sha"] == sha)


async def test_push_emits_push_and_runs_pytest_ci_on_the_head_sha(fakehub: FakeHub, webhook_sink: WebhookSink,
                                                                   tmp_path: Path) -> None:
    fakehub.apps.subscribe("push")  # Agent-Z's manifest does not subscribe to push events
    await fakehub.repos.create(REPO, PASSING)
    sha = await push_branch(fakehub, tmp_path, "agent-z/issue-1-x", {"notes.txt": "hi\n"}, pusher="alice")

    push = await webhook_sink.wait_for("push", where=lambda d: d.payload["after"] == sha)
    assert push.payload["ref"] == "refs/heads/agent-z/issue-1-x"
    assert push.payload["created"] is True
    assert push.payload["head_commit"]["id"] == sha
    assert push.payload["sender"]["login"] == "alice"
    assert push.payload["commits"][-1]["added"] == ["notes.txt"]

    run = await webhook_sink.wait_for("check_run", "completed", where=on_sha(sha))
    assert run.payload["check_run"]["name"] == "ci"
    assert run.payload["check_run"]["conclusion"] == "success"
    assert "1 passed" in run.payload["check_run"]["output"]["summary"]
    suite = await webhook_sink.wait_for("check_suite", "completed")
    assert suite.payload["check_suite"]["head_sha"] == sha
    assert suite.payload["check_suite"]["conclusion"] == "success"
    assert suite.payload["check_suite"]["head_branch"] == "agent-z/issue-1-x"
    runs = await fakehub.checks.find_runs(REPO, "agent-z/issue-1-x", check_name="ci")
    assert [r["conclusion"] for r in runs] == ["success"]


async def test_failing_ci_command_concludes_failure_with_output_tail(fakehub: FakeHub, webhook_sink: WebhookSink,
                                                                      tmp_path: Path) -> None:
    await fakehub.repos.create(REPO, PASSING, ci_command="echo first-line; echo broken-build >&2; exit 3")
    sha = await push_branch(fakehub, tmp_path, "feature", {"x.txt": "x\n"})
    run = await webhook_sink.wait_for("check_run", "completed", where=on_sha(sha))
    check = run.payload["check_run"]
    assert check["conclusion"] == "failure"
    assert "broken-build" in check["output"]["summary"]
    assert "exited with 3" in check["output"]["summary"]
    suite = await webhook_sink.wait_for("check_suite", "completed")
    assert suite.payload["check_suite"]["conclusion"] == "failure"


async def test_push_to_pull_request_head_emits_synchronize_and_links_ci(fakehub: FakeHub, webhook_sink: WebhookSink,
                                                                         tmp_path: Path) -> None:
    await fakehub.repos.create(REPO, PASSING, ci_command="true")
    first = await push_branch(fakehub, tmp_path, "feature", {"a.txt": "1\n"})
    pull = await fakehub.pulls.create(REPO, {"title": "A", "head": "feature", "base": "main"}, actor=BOT)
    assert pull["head"]["sha"] == first
    second = await push_branch(fakehub, tmp_path, "feature", {"a.txt": "2\n"})

    sync = await webhook_sink.wait_for("pull_request", "synchronize")
    assert (sync.payload["before"], sync.payload["after"]) == (first, second)
    assert sync.payload["pull_request"]["head"]["sha"] == second
    assert sync.payload["number"] == pull["number"]
    run = await webhook_sink.wait_for("check_run", "completed",
                                      where=lambda d: d.payload["check_run"]["head_sha"] == second)
    assert [p["number"] for p in run.payload["check_run"]["pull_requests"]] == [pull["number"]]
    suite = await webhook_sink.wait_for("check_suite", "completed",
                                        where=lambda d: d.payload["check_suite"]["head_sha"] == second)
    assert [p["number"] for p in suite.payload["check_suite"]["pull_requests"]] == [pull["number"]]


async def test_fork_like_head_has_empty_pull_requests(fakehub: FakeHub, webhook_sink: WebhookSink,
                                                      tmp_path: Path) -> None:
    await fakehub.repos.create(REPO, PASSING, ci_command="true")
    await push_branch(fakehub, tmp_path, "patch", {"a.txt": "1\n"})
    await fakehub.pulls.create(REPO, {"title": "Fork", "head": "forker:patch", "base": "main"}, actor="forker")
    sha = await push_branch(fakehub, tmp_path, "patch", {"a.txt": "2\n"})
    run = await webhook_sink.wait_for("check_run", "completed", where=on_sha(sha))
    assert run.payload["check_run"]["pull_requests"] == []


async def test_merge_updates_base_branch_in_the_bare_repo(fakehub: FakeHub, webhook_sink: WebhookSink,
                                                          tmp_path: Path) -> None:
    fakehub.apps.subscribe("push")
    await fakehub.repos.create(REPO, PASSING, ci_command=None)
    issue = fakehub.issues.create(REPO, "Add feature", user="alice")
    head = await push_branch(fakehub, tmp_path, "feature", {"feature.txt": "new\n"})
    pull = await fakehub.pulls.create(REPO, {"title": "Feature", "head": "feature", "base": "main",
                                            "body": f"Fixes #{issue['number']}"}, actor=BOT)
    result = await fakehub.pulls.merge(REPO, pull["number"], actor="alice")
    assert result["merged"] is True

    bare = fakehub.repo_git(REPO)
    main_sha = await run_git(f"--git-dir={bare}", "rev-parse", "refs/heads/main")
    assert main_sha == result["sha"]
    parents = (await run_git(f"--git-dir={bare}", "rev-list", "--parents", "-n", "1", main_sha)).split()[1:]
    assert head in parents
    checkout = await clone(fakehub, REPO, tmp_path / "after-merge")
    assert (checkout / "feature.txt").read_text() == "new\n"

    closed = await webhook_sink.wait_for("pull_request", "closed")
    assert closed.payload["pull_request"]["merged"] is True
    assert closed.payload["pull_request"]["merge_commit_sha"] == main_sha
    push = await webhook_sink.wait_for("push", where=lambda d: d.payload["ref"] == "refs/heads/main")
    assert push.payload["after"] == main_sha
    issue_closed = await webhook_sink.wait_for("issues", "closed")
    assert issue_closed.payload["issue"]["state_reason"] == "completed"
    again = await fakehub.pulls.get(REPO, pull["number"])
    assert again["state"] == "closed"
    assert again["merged"] is True


async def test_conflicting_merge_is_refused(fakehub: FakeHub, tmp_path: Path) -> None:
    await fakehub.repos.create(REPO, {"a.txt": "base\n"}, ci_command=None)
    await push_branch(fakehub, tmp_path, "left", {"a.txt": "left\n"})
    await push_branch(fakehub, tmp_path, "right", {"a.txt": "right\n"})
    first = await fakehub.pulls.create(REPO, {"title": "L", "head": "left", "base": "main"}, actor=BOT)
    second = await fakehub.pulls.create(REPO, {"title": "R", "head": "right", "base": "main"}, actor=BOT)
    await fakehub.pulls.merge(REPO, first["number"])
    assert (await fakehub.pulls.get(REPO, second["number"]))["mergeable"] is False
    with pytest.raises(ApiError) as refused:
        await fakehub.pulls.merge(REPO, second["number"])
    assert refused.value.status == 405


async def test_stop_kills_running_ci(tmp_path: Path, webhook_sink: WebhookSink) -> None:
    pid_file = tmp_path / "ci.pid"
    hub = FakeHub(tmp_path / "root", webhook_url=webhook_sink.url, webhook_secret=webhook_sink.secret)
    await hub.start()
    await hub.repos.create(REPO, {"a.txt": "a\n"},
                          ci_command=f"echo $$ > {shlex.quote(str(pid_file))}; exec sleep 60")
    await push_branch(hub, tmp_path, "slow", {"b.txt": "b\n"})
    for _ in range(500):
        if pid_file.exists() and pid_file.read_text().strip():
            break
        await asyncio.sleep(0.01)
    pid = int(pid_file.read_text())
    await hub.stop()
    for _ in range(200):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("CI process still running after stop()")
    assert hub.ci.pending == 0


async def test_standalone_process_serves_and_stops(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentz_app.fakehub", "--root", str(tmp_path / "root"), "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        info = json.loads(line)
        async with aiohttp.ClientSession() as session, session.get(info["api_url"] + "/_fakehub/info") as r:
            assert r.status == 200
            assert (await r.json())["git_url_template"] == info["git_url_template"]
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 30) == 0
