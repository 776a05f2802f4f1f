"""Mirrors, per-run working copies, checkpoints and garbage collection on real git repos."""

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
from workers.worktrees import ForeignBranch, Worktrees, branch_name, checkpoint_ref

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


def run_row(run_id: str, number: int, **fields: object) -> Run:
    return Run(id=run_id, repo=REPO, issue_number=number, status="developing",
               branch=branch_name(number, f"issue {number}"), base_branch="trunk", **fields)


async def test_two_runs_work_in_parallel_working_copies_from_the_default_branch(wt_settings: Settings) -> None:
    trees = Worktrees(wt_settings)
    run_a, run_b = run_row("runa", 1), run_row("runb", 2)
    path_a, path_b = await asyncio.gather(
        trees.create("runa", REPO, str(run_a.branch), "trunk"),
        trees.create("runb", REPO, str(run_b.branch), "trunk"),
    )
    assert path_a != path_b
    assert sh("git", "branch", "--show-current", cwd=path_a) == "agent-z/issue-1-issue-1"
    (path_a / "src" / "app.py").write_text("print('a')\n")
    (path_b / "new.txt").write_text("b\n")
    assert (await trees.snapshot(run_a, path_a)).changed_paths == ["src/app.py"]
    assert (await trees.snapshot(run_b, path_b)).changed_paths == ["new.txt"]
    # The agent's own repository works for the agent: it can diff against the default branch.
    assert sh("git", "diff", "--name-only", "origin/trunk", cwd=path_b) == ""
    assert "new.txt" in sh("git", "status", "--porcelain", cwd=path_b)


async def test_checkpoint_is_pushed_and_resume_rebuilds_the_working_copy(wt_settings: Settings, origin: Path) -> None:
    trees = Worktrees(wt_settings)
    run = run_row("runc", 3)
    path = await trees.create("runc", REPO, str(run.branch), "trunk")
    (path / "feature.py").write_text("x = 1\n")
    snapshot = await trees.snapshot(run, path)
    sha = await trees.checkpoint("runc", REPO, snapshot)
    assert sh("git", "rev-parse", checkpoint_ref("runc"), cwd=origin) == sha
    run.checkpoint_sha = sha
    assert await trees.changed_files(REPO, "trunk", sha) == ["feature.py"]

    await trees.remove("runc", REPO)
    assert not path.exists()
    resumed = await trees.resume("runc", REPO, str(run.branch), "trunk", checkpoint=sha)
    assert (resumed / "feature.py").read_text() == "x = 1\n"
    assert sh("git", "rev-parse", "HEAD", cwd=resumed) == sha


async def test_resume_on_another_host_takes_the_remote_checkpoint(wt_settings: Settings, tmp_path: Path) -> None:
    """Host B already has a stale working copy and mirror; host A pushed a newer checkpoint."""
    branch = branch_name(6, "Moved")
    host_a = Worktrees(wt_settings.model_copy(update={"state_dir": tmp_path / "host-a"}))
    host_b = Worktrees(wt_settings.model_copy(update={"state_dir": tmp_path / "host-b"}))
    stale = await host_b.create("runf", REPO, branch, "trunk")
    (stale / "feature.py").write_text("stale\n")
    path_a = await host_a.create("runf", REPO, branch, "trunk")
    (path_a / "feature.py").write_text("fixed on host A\n")
    sha = await host_a.checkpoint("runf", REPO, await host_a.snapshot(run_row("runf", 6), path_a))

    resumed = await host_b.resume("runf", REPO, branch, "trunk", checkpoint=sha)
    assert (resumed / "feature.py").read_text() == "fixed on host A\n"


async def test_resume_on_the_same_host_drops_what_an_interrupted_attempt_left(wt_settings: Settings) -> None:
    trees = Worktrees(wt_settings)
    run = run_row("rune", 5)
    path = await trees.create("rune", REPO, str(run.branch), "trunk")
    (path / "feature.py").write_text("x = 1\n")
    sha = await trees.checkpoint("rune", REPO, await trees.snapshot(run, path))
    # The next attempt dies half-way: an edit, a new file, no checkpoint.
    (path / "feature.py").write_text("x = 2  # half done\n")
    (path / "scratch.txt").write_text("partial\n")

    # ... and its orphaned agent (an unsandboxed one) is still running in the working copy.
    orphan = await asyncio.create_subprocess_exec("sleep", "60", cwd=path, start_new_session=True)

    resumed = await trees.resume("rune", REPO, str(run.branch), "trunk", checkpoint=sha)
    async with asyncio.timeout(10):
        assert await orphan.wait() == -signal.SIGKILL
    assert resumed == path
    assert (path / "feature.py").read_text() == "x = 1\n"
    assert not (path / "scratch.txt").exists()


async def test_push_branch_only_touches_agent_z_branches(wt_settings: Settings, origin: Path) -> None:
    trees = Worktrees(wt_settings)
    run = run_row("rund", 4)
    path = await trees.create("rund", REPO, str(run.branch), "trunk")
    (path / "f.txt").write_text("f\n")
    sha = await trees.checkpoint("rund", REPO, await trees.snapshot(run, path))
    head = await trees.push_branch(REPO, sha, str(run.branch))
    assert sh("git", "rev-parse", f"refs/heads/{run.branch}", cwd=origin) == head == sha
    assert await trees.push_branch(REPO, sha, str(run.branch)) == head  # repeat is a no-op
    with pytest.raises(ForeignBranch):
        await trees.push_branch(REPO, sha, "trunk")


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

    removed = await trees.gc(db)

    assert sorted(removed) == ["done1", "ghost1"]
    assert live.exists()
    assert not finished.exists()
    assert not orphan.exists()
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
