"""Mirrors, per-run worktrees, checkpoints and garbage collection on real git repos."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

import pytest

from agentz_app.config import Settings
from agentz_app.store.db import Database
from agentz_app.store.models import Run
from workers.gitops import credential_args, git_env
from workers.worktrees import Worktrees, branch_name, checkpoint_ref

REPO = "octo/widgets"


def sh(*args: str, cwd: Path) -> str:
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    """A bare origin whose default branch is ``trunk`` (never assume main)."""
    bare = tmp_path / "remote" / "octo" / "widgets.git"
    seed = tmp_path / "seed"
    seed.mkdir()
    sh("git", "init", "--quiet", "-b", "trunk", cwd=seed)
    (seed / "README.md").write_text("widgets\n")
    (seed / "src").mkdir()
    (seed / "src" / "app.py").write_text("print('hi')\n")
    sh("git", "add", "-A", cwd=seed)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@e", "commit", "--quiet", "-m", "init", cwd=seed)
    bare.parent.mkdir(parents=True)
    sh("git", "clone", "--quiet", "--bare", str(seed), str(bare), cwd=tmp_path)
    return bare


@pytest.fixture
def wt_settings(tmp_path: Path, origin: Path) -> Settings:
    return Settings.load(
        None,
        database_url=f"sqlite:///{tmp_path / 'db.sqlite'}",
        state_dir=tmp_path / "state",
        git_url_template=f"file://{tmp_path / 'remote'}/{{full_name}}.git",
        default_backend="scripted",
    )


def add_run(db: Database, run_id: str, status: str, number: int = 1) -> None:
    with db.begin() as session:
        session.add(Run(id=run_id, repo=REPO, issue_number=number, status=status,
                        branch=branch_name(number, f"issue {number}")))


async def test_two_runs_work_in_parallel_worktrees_from_the_default_branch(wt_settings: Settings) -> None:
    trees = Worktrees(wt_settings)
    path_a, path_b = await asyncio.gather(
        trees.create("runa", REPO, branch_name(1, "First"), "trunk"),
        trees.create("runb", REPO, branch_name(2, "Second"), "trunk"),
    )
    assert path_a != path_b
    assert sh("git", "branch", "--show-current", cwd=path_a) == "agent-z/issue-1-first"
    assert sh("git", "branch", "--show-current", cwd=path_b) == "agent-z/issue-2-second"
    (path_a / "src" / "app.py").write_text("print('a')\n")
    (path_b / "new.txt").write_text("b\n")
    assert await trees.changed_files(path_a, "trunk") == ["src/app.py"]
    assert await trees.changed_files(path_b, "trunk") == ["new.txt"]
    assert (trees.mirror_path(REPO) / "HEAD").exists()


async def test_checkpoint_is_pushed_and_resume_rebuilds_the_worktree(wt_settings: Settings, origin: Path) -> None:
    trees = Worktrees(wt_settings)
    path = await trees.create("runc", REPO, branch_name(3, "Resume me"), "trunk")
    (path / "feature.py").write_text("x = 1\n")
    sha = await trees.checkpoint("runc", REPO, path)
    assert sh("git", "rev-parse", checkpoint_ref("runc"), cwd=origin) == sha
    assert await trees.changed_files(path, "trunk") == ["feature.py"]

    await trees.remove("runc", REPO)
    assert not path.exists()
    resumed = await trees.resume("runc", REPO, branch_name(3, "Resume me"), "trunk")
    assert (resumed / "feature.py").read_text() == "x = 1\n"
    assert sh("git", "rev-parse", "HEAD", cwd=resumed) == sha


async def test_resume_on_the_same_host_drops_what_an_interrupted_attempt_left(wt_settings: Settings) -> None:
    trees = Worktrees(wt_settings)
    branch = branch_name(5, "Interrupted")
    path = await trees.create("rune", REPO, branch, "trunk")
    (path / "feature.py").write_text("x = 1\n")
    sha = await trees.checkpoint("rune", REPO, path)
    # The next attempt dies half-way: an edit, a new file, no checkpoint.
    (path / "feature.py").write_text("x = 2  # half done\n")
    (path / "scratch.txt").write_text("partial\n")

    # ... and its orphaned agent is still running in the worktree.
    orphan = subprocess.Popen(["sleep", "60"], cwd=path, start_new_session=True)

    resumed = await trees.resume("rune", REPO, branch, "trunk", checkpoint=sha)
    assert orphan.wait(timeout=10) == -signal.SIGKILL
    assert resumed == path
    assert (path / "feature.py").read_text() == "x = 1\n"
    assert not (path / "scratch.txt").exists()
    assert sh("git", "rev-parse", "HEAD", cwd=path) == sha


async def test_push_branch_only_touches_agent_z_branches(wt_settings: Settings, origin: Path) -> None:
    trees = Worktrees(wt_settings)
    branch = branch_name(4, "Push")
    path = await trees.create("rund", REPO, branch, "trunk")
    (path / "f.txt").write_text("f\n")
    sh("git", "add", "-A", cwd=path)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@e", "commit", "--quiet", "-m", "f", cwd=path)
    head = await trees.push_branch(REPO, path, branch)
    assert sh("git", "rev-parse", f"refs/heads/{branch}", cwd=origin) == head
    assert await trees.push_branch(REPO, path, branch) == head  # repeat is a no-op
    with pytest.raises(ValueError):
        await trees.push_branch(REPO, path, "trunk")


async def test_gc_after_a_crash_leaves_no_orphan(wt_settings: Settings) -> None:
    db = Database.from_url(wt_settings.database_url)
    from agentz_app.store.migrate import migrate

    migrate(db)
    trees = Worktrees(wt_settings)
    add_run(db, "live1", "developing", 1)
    add_run(db, "done1", "done", 2)
    live = await trees.create("live1", REPO, branch_name(1, "issue 1"), "trunk")
    finished = await trees.create("done1", REPO, branch_name(2, "issue 2"), "trunk")
    orphan = await trees.create("ghost1", REPO, branch_name(3, "issue 3"), "trunk")
    # A crash between worktree removal and branch deletion leaves a stale branch behind.
    mirror = trees.mirror_path(REPO)
    sh("git", "branch", "agent-z/issue-9-stale", "refs/remotes/origin/trunk", cwd=mirror)

    removed = await trees.gc(db)

    assert sorted(removed) == ["done1", "ghost1"]
    assert live.exists() and not finished.exists() and not orphan.exists()
    branches = sh("git", "for-each-ref", "--format=%(refname:short)", "refs/heads/", cwd=mirror).splitlines()
    assert branches == ["agent-z/issue-1-issue-1"]
    listing = sh("git", "worktree", "list", "--porcelain", cwd=mirror)
    assert "ghost1" not in listing and "done1" not in listing
    db.dispose()


def test_token_reaches_git_only_through_the_environment() -> None:
    token = "ghs_" + "a" * 36
    args = credential_args(token)
    assert token not in " ".join(args)
    assert git_env(token)["AGENTZ_GIT_TOKEN"] == token
    assert credential_args(None) == []
    assert "AGENTZ_GIT_TOKEN" not in git_env(None)


async def test_credential_helper_answers_git_with_the_token(tmp_path: Path) -> None:
    from workers.gitops import git

    token = "ghs_" + "b" * 36
    result = await git("credential", "fill", cwd=tmp_path, token=token,
                       stdin="protocol=https\nhost=example.invalid\n\n")
    assert f"password={token}" in result.stdout
    assert "username=x-access-token" in result.stdout
