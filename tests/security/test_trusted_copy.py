"""Attacks on the trusted commit path: an agent owns its working copy's ``.git``, and tries to use it.

Trusted code reads the working copy with the mirror as GIT_DIR, commits in the mirror and
pushes from it, so nothing planted in the agent's repository may run or be read.
"""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
from pathlib import Path

import pytest

from agentz_app.config import Settings
from agentz_app.store.models import Run
from workers.worktrees import Worktrees, branch_name

REPO = "octo/widgets"


def sh(*args: str, cwd: Path) -> str:
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def trees(tmp_path: Path) -> Worktrees:
    seed = tmp_path / "seed"
    seed.mkdir()
    sh("git", "init", "--quiet", "-b", "trunk", cwd=seed)
    (seed / "README.md").write_text("widgets\n")
    sh("git", "add", "-A", cwd=seed)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@e", "commit", "--quiet", "-m", "init", cwd=seed)
    bare = tmp_path / "remote" / "octo" / "widgets.git"
    bare.parent.mkdir(parents=True)
    sh("git", "clone", "--quiet", "--bare", str(seed), str(bare), cwd=tmp_path)
    settings = Settings.load(None, database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", state_dir=tmp_path / "state",
                             git_url_template=f"file://{tmp_path / 'remote'}/{{full_name}}.git")
    return Worktrees(settings)


def _run() -> Run:
    return Run(id="run1", repo=REPO, issue_number=1, status="developing", branch=branch_name(1, "x"),
               base_branch="trunk")


def _plant_hook(directory: Path, marker: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("pre-push", "pre-commit", "post-checkout", "reference-transaction", "post-index-change"):
        hook = directory / name
        hook.write_text(f"#!/bin/sh\necho \"$0 $AGENTZ_GIT_TOKEN\" >> {marker}\n")
        hook.chmod(hook.stat().st_mode | stat.S_IEXEC)


async def test_hooks_fsmonitor_and_config_planted_by_the_agent_never_run(trees: Worktrees, tmp_path: Path) -> None:
    run = _run()
    path = await trees.create(run.id, REPO, str(run.branch), "trunk")
    mirror_config = (trees.mirror_path(REPO) / "config").read_text()
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil-hooks"
    _plant_hook(evil, marker)
    _plant_hook(path / ".git" / "hooks", marker)
    sh("git", "config", "core.hooksPath", str(evil), cwd=path)
    sh("git", "config", "core.fsmonitor", f"echo fsmonitor >> {marker}; false", cwd=path)
    # A second git dir the agent points its repository at through commondir.
    fake = path / "not-git"
    fake.mkdir()
    (fake / "config").write_text(f"[core]\n\thooksPath = {evil}\n\tfsmonitor = echo x >> {marker}\n")
    (path / ".git" / "commondir").write_text(str(fake))
    (path / "change.txt").write_text("work\n")

    snapshot = await trees.snapshot(run, path)
    sha = await trees.checkpoint(run.id, REPO, snapshot)
    await trees.push_branch(REPO, sha, str(run.branch))

    assert not marker.exists()
    assert (trees.mirror_path(REPO) / "config").read_text() == mirror_config
    assert snapshot.changed_paths == ["change.txt", "not-git/config"]  # ordinary files to the mirror


async def test_symlinks_are_stored_as_links_and_never_followed(trees: Worktrees, tmp_path: Path) -> None:
    secret = tmp_path / "app.private-key.pem"
    secret.write_text("-----BEGIN RSA PRIVATE KEY-----\nMIIEsecret\n-----END RSA PRIVATE KEY-----\n")
    run = _run()
    path = await trees.create(run.id, REPO, str(run.branch), "trunk")
    os.symlink(secret, path / "key.pem")
    os.symlink("/etc", path / "etc-dir")

    snapshot = await trees.snapshot(run, path)

    by_path = {change.path: change for change in snapshot.changes}
    assert by_path["key.pem"].mode == "120000"
    assert by_path["key.pem"].content == os.fsencode(str(secret))
    assert by_path["etc-dir"].mode == "120000"
    assert not any(name.startswith("etc-dir/") for name in by_path)


async def test_a_nested_repository_shows_as_a_gitlink_not_as_its_files(trees: Worktrees) -> None:
    run = _run()
    path = await trees.create(run.id, REPO, str(run.branch), "trunk")
    inner = path / "vendor" / "lib"
    inner.mkdir(parents=True)
    sh("git", "init", "--quiet", cwd=inner)
    (inner / "x.txt").write_text("x\n")
    sh("git", "add", "-A", cwd=inner)
    sh("git", "-c", "user.name=t", "-c", "user.email=t@e", "commit", "--quiet", "-m", "x", cwd=inner)

    snapshot = await trees.snapshot(run, path)

    assert [(c.path, c.mode) for c in snapshot.changes] == [("vendor/lib", "160000")]


async def test_the_agents_own_commits_and_history_are_ignored(trees: Worktrees) -> None:
    """What counts is the files; commits the agent made (any author, any parent) are not pushed."""
    run = _run()
    path = await trees.create(run.id, REPO, str(run.branch), "trunk")
    (path / "a.txt").write_text("a\n")
    sh("git", "add", "-A", cwd=path)
    sh("git", "-c", "user.name=Mallory", "-c", "user.email=m@evil", "commit", "--quiet", "-m", "evil", cwd=path)
    agent_head = sh("git", "rev-parse", "HEAD", cwd=path)

    snapshot = await trees.snapshot(run, path)
    sha = await trees.checkpoint(run.id, REPO, snapshot)

    mirror = trees.mirror_path(REPO)
    assert sha != agent_head
    assert sh("git", "log", "--format=%an", "-1", sha, cwd=mirror) == "Agent-Z"
    lookup = await asyncio.create_subprocess_exec("git", "cat-file", "-e", agent_head, cwd=mirror,
                                                  stderr=asyncio.subprocess.DEVNULL)
    assert await lookup.wait() != 0


def _mirror_blobs(trees: Worktrees) -> list[bytes]:
    mirror = trees.mirror_path(REPO)
    listing = sh("git", "cat-file", "--batch-all-objects", "--batch-check", cwd=mirror).splitlines()
    return [subprocess.run(["git", "cat-file", "blob", line.split()[0]], cwd=mirror, capture_output=True,
                           check=True).stdout
            for line in listing if line.split()[1] == "blob"]


async def test_a_snapshot_reaches_the_mirror_other_agents_read_only_once_it_is_checkpointed(trees: Worktrees) -> None:
    """Working copies borrow the mirror's objects; a refused file must never be readable there."""
    run = _run()
    path = await trees.create(run.id, REPO, str(run.branch), "trunk")
    (path / "stolen.txt").write_text("key-material-that-the-policy-refuses\n")

    refused = await trees.snapshot(run, path)
    assert [c.path for c in refused.changes] == ["stolen.txt"]
    assert not any(b"key-material" in blob for blob in _mirror_blobs(trees))

    (path / "stolen.txt").unlink()
    (path / "fine.txt").write_text("ordinary work\n")
    sha = await trees.checkpoint(run.id, REPO, await trees.snapshot(run, path))

    blobs = _mirror_blobs(trees)
    assert b"ordinary work\n" in blobs
    assert not any(b"key-material" in blob for blob in blobs)
    assert sh("git", "rev-parse", "refs/agent-z/runs/run1", cwd=trees.mirror_path(REPO)) == sha
    await trees.remove(run.id, REPO)
    assert not trees.staging_path(run.id).exists()
