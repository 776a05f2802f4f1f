"""Remote git calls retry network failures with bounded backoff; refused pushes and bad credentials fail at once."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from agentz_app.config import Settings
from agentz_app.procs import ProcessResult
from workers.gitops import GitError, RemoteRetry, git_remote, is_permanent_failure
from workers.worktrees import Worktrees

REPO = "octo/widgets"


def sh(*args: str, cwd: Path) -> str:
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    bare = tmp_path / "remote" / "octo" / "widgets.git"
    seed = tmp_path / "seed"
    seed.mkdir()
    sh("git", "init", "--quiet", "-b", "trunk", cwd=seed)
    (seed / "README.md").write_text("widgets\n")
    sh("git", "add", "-A", cwd=seed)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@e", "commit", "--quiet", "-m", "init", cwd=seed)
    bare.parent.mkdir(parents=True)
    sh("git", "clone", "--quiet", "--bare", str(seed), str(bare), cwd=tmp_path)
    return bare


def settings_for(tmp_path: Path, attempts: int = 3) -> Settings:
    return Settings.load(None, database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", state_dir=tmp_path / "state",
                         git_url_template=f"file://{tmp_path / 'remote'}/{{full_name}}.git",
                         default_backend="scripted", github_retry_attempts=attempts)


def recording_sleep(waits: list[float], on_wait: Callable[[], object] = lambda: None) -> RemoteRetry:
    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        on_wait()

    return RemoteRetry(sleep=sleep)


async def test_a_fetch_that_fails_while_the_remote_is_unreachable_succeeds_on_retry(
        tmp_path: Path, origin: Path) -> None:
    hidden = origin.with_name("away.git")
    await asyncio.to_thread(origin.rename, hidden)
    waits: list[float] = []
    trees = Worktrees(settings_for(tmp_path))
    trees.remote_retry = replace(recording_sleep(waits, lambda: hidden.rename(origin)), attempts=3)
    mirror = await trees.ensure_mirror(REPO)
    assert waits == [0.5]
    assert sh("git", "rev-parse", "refs/remotes/origin/trunk", cwd=mirror) == sh("git", "rev-parse", "trunk",
                                                                                  cwd=origin)


async def test_a_remote_that_stays_unreachable_fails_after_github_retry_attempts_with_growing_waits(
        tmp_path: Path, origin: Path) -> None:
    await asyncio.to_thread(origin.rename, origin.with_name("away.git"))
    waits: list[float] = []
    trees = Worktrees(settings_for(tmp_path, attempts=4))
    trees.remote_retry = replace(recording_sleep(waits), attempts=trees.remote_retry.attempts)
    with pytest.raises(GitError, match="fetch"):
        await trees.ensure_mirror(REPO)
    assert waits == [0.5, 1.0, 2.0]


async def test_a_non_fast_forward_push_is_not_retried(tmp_path: Path, origin: Path) -> None:
    trees = Worktrees(settings_for(tmp_path))
    mirror = await trees.ensure_mirror(REPO)
    tree = sh("git", "rev-parse", "refs/remotes/origin/trunk^{tree}", cwd=mirror)
    unrelated = sh("git", "-c", "user.name=t", "-c", "user.email=t@e", "commit-tree", tree, "-m", "other",
                   cwd=mirror)
    waits: list[float] = []
    result = await git_remote("push", "origin", f"{unrelated}:refs/heads/trunk", cwd=mirror, check=False,
                              retry=recording_sleep(waits))
    assert result.exit_code != 0
    assert "[rejected]" in result.stderr
    assert waits == []


async def test_a_stale_force_with_lease_is_not_retried(tmp_path: Path, origin: Path) -> None:
    trees = Worktrees(settings_for(tmp_path))
    mirror = await trees.ensure_mirror(REPO)
    tree = sh("git", "rev-parse", "refs/remotes/origin/trunk^{tree}", cwd=mirror)
    child = sh("git", "-c", "user.name=t", "-c", "user.email=t@e", "commit-tree", tree, "-p",
               "refs/remotes/origin/trunk", "-m", "next", cwd=mirror)
    waits: list[float] = []
    with pytest.raises(GitError, match="stale info"):
        await git_remote("push", f"--force-with-lease=refs/heads/trunk:{'1' * 40}", "origin",
                         f"{child}:refs/heads/trunk", cwd=mirror, retry=recording_sleep(waits))
    assert waits == []


async def test_bad_credentials_are_not_retried(tmp_path: Path, aiohttp_server: AiohttpServer) -> None:
    requests: list[str] = []

    async def refuse(request: web.Request) -> web.Response:
        requests.append(request.path)
        return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="GitHub"'})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", refuse)
    server = await aiohttp_server(app)
    url = f"http://127.0.0.1:{server.port}/octo/widgets.git"
    sh("git", "init", "--quiet", "--bare", str(tmp_path / "m.git"), cwd=tmp_path)
    waits: list[float] = []
    with pytest.raises(GitError, match="Authentication failed"):
        await git_remote("ls-remote", url, cwd=tmp_path / "m.git", token="bad-token", retry=recording_sleep(waits))
    assert waits == []
    assert requests


@pytest.mark.parametrize(("exit_code", "stderr", "permanent"), [
    (128, "fatal: Authentication failed for 'https://github.com/o/r.git/'", True),
    (128, "fatal: could not read Username for 'https://github.com': terminal prompts disabled", True),
    (1, " ! [rejected]        abc -> agent-z/x (non-fast-forward)", True),
    (1, " ! [rejected]        abc -> agent-z/x (stale info)", True),
    (1, " ! [remote rejected] abc -> main (protected branch hook declined)", True),
    (128, "fatal: unable to access 'https://github.com/o/r.git/': Could not resolve host: github.com", False),
    (128, "fatal: the remote end hung up unexpectedly", False),
    (128, "error: RPC failed; HTTP 502 curl 22 The requested URL returned error: 502", False),
    (129, "usage: git fetch", True),
    (128, "fatal: couldn't find remote ref refs/agent-z/runs/abc", True),
])
def test_remote_failures_are_classified_from_exit_code_and_stderr(exit_code: int, stderr: str,
                                                                  permanent: bool) -> None:
    result = ProcessResult(("git",), exit_code, "", stderr, 0.1)
    assert is_permanent_failure(result) is permanent
