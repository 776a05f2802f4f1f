"""Bare mirrors per repository and one worktree + branch per run.

Layout under ``state_dir``::

    mirrors/<owner>/<name>.git      bare mirror, remote-tracking refs under refs/remotes/origin
    mirrors/<owner>/<name>.lock     flock held around fetches and worktree changes
    worktrees/<run_id>              the run's working tree on branch agent-z/issue-<n>-<slug>

Checkpoints push WIP to ``refs/agent-z/runs/<run_id>`` on the remote so another
host can resume the run from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import shutil
import signal
import time
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from sqlalchemy import select

from agentz_app.config import Settings
from agentz_app.logs import get_logger
from agentz_app.store import states
from agentz_app.store.db import Database
from agentz_app.store.models import Run
from workers.gitops import GitError, git, git_out

BRANCH_PREFIX = "agent-z/"
CHECKPOINT_PREFIX = "refs/agent-z/runs/"
MAX_BRANCH_LENGTH = 60
_RUN_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_REPO_RE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")

TokenProvider = Callable[[str], Awaitable[str | None]]

log = get_logger("agentz.worktrees")


def slugify(title: str, *, limit: int) -> str:
    """Lower-case ASCII slug of ``title`` using only ``[a-z0-9-]``, at most ``limit`` chars."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")
    slug = slug[:limit].rstrip("-")
    return slug


def branch_name(number: int, title: str) -> str:
    """The run branch for an issue: ``agent-z/issue-<n>-<slug>``, safe for git and shells."""
    if number < 1:
        raise ValueError("issue number must be positive")
    stem = f"{BRANCH_PREFIX}issue-{number}"
    slug = slugify(title, limit=MAX_BRANCH_LENGTH - len(stem) - 1)
    return f"{stem}-{slug}" if slug else stem


def checkpoint_ref(run_id: str) -> str:
    """The remote ref a run's WIP is pushed to."""
    return CHECKPOINT_PREFIX + _checked_run_id(run_id)


def _checked_run_id(run_id: str) -> str:
    if not _RUN_ID_RE.match(run_id):
        raise ValueError(f"invalid run id {run_id!r}")
    return run_id


def _checked_repo(repo: str) -> str:
    if not _REPO_RE.match(repo) or ".." in repo:
        raise ValueError(f"invalid repository name {repo!r}")
    return repo


async def _no_token(_: str) -> str | None:
    return None


class Worktrees:
    """Mirrors and per-run worktrees under ``settings.state_dir``."""

    def __init__(self, settings: Settings, *, token_provider: TokenProvider | None = None) -> None:
        self.settings = settings
        self.root = Path(settings.state_dir).resolve()
        self._token_provider = token_provider or _no_token

    # Paths ---------------------------------------------------------------

    def mirror_path(self, repo: str) -> Path:
        owner, name = _checked_repo(repo).split("/")
        return self.root / "mirrors" / owner / f"{name}.git"

    def worktree_path(self, run_id: str) -> Path:
        return self.root / "worktrees" / _checked_run_id(run_id)

    def remote_url(self, repo: str) -> str:
        return self.settings.git_url_template.format(full_name=_checked_repo(repo))

    async def _token(self, repo: str) -> str | None:
        if self.remote_url(repo).startswith("file://") or "://" not in self.remote_url(repo):
            return None
        return await self._token_provider(repo)

    @contextlib.asynccontextmanager
    async def locked(self, repo: str) -> AsyncIterator[None]:
        """Hold the repository's mirror lock (works across processes and tasks)."""
        lock_path = self.mirror_path(repo).with_suffix(".lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a+") as handle:
            while True:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await asyncio.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    # Mirror --------------------------------------------------------------

    async def _ensure_mirror_locked(self, repo: str, *, refs: tuple[str, ...] = ()) -> Path:
        mirror = self.mirror_path(repo)
        if not (mirror / "HEAD").exists():
            if mirror.exists():
                shutil.rmtree(mirror)
            mirror.mkdir(parents=True)
            await git("init", "--bare", "--quiet", str(mirror), cwd=mirror.parent)
            await git("config", "remote.origin.url", self.remote_url(repo), cwd=mirror)
            await git("config", "remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*", cwd=mirror)
        token = await self._token(repo)
        await git("fetch", "--quiet", "--prune", "origin", cwd=mirror, token=token)
        for ref in refs:
            await git("fetch", "--quiet", "origin", f"+{ref}:{ref}", cwd=mirror, token=token)
        return mirror

    async def ensure_mirror(self, repo: str) -> Path:
        """Clone the bare mirror on first use, otherwise fetch it."""
        async with self.locked(repo):
            return await self._ensure_mirror_locked(repo)

    # Worktrees -----------------------------------------------------------

    async def create(self, run_id: str, repo: str, branch: str, base: str) -> Path:
        """A fresh worktree for the run on ``branch``, started from ``origin/<base>``."""
        return await self._add(run_id, repo, branch, f"refs/remotes/origin/{base}")

    async def resume(self, run_id: str, repo: str, branch: str, base: str, *, checkpoint: str | None = None) -> Path:
        """The run's worktree, ready for a stage to start.

        A worktree left on this host is reset to ``checkpoint`` (or its last commit) and
        cleaned: edits an interrupted attempt left uncommitted are not known to be good, and
        another host resuming from the checkpoint would not see them either. Otherwise the
        worktree is rebuilt from the checkpoint ref, the pushed branch or ``base``.
        """
        path = self.worktree_path(run_id)
        if (path / ".git").exists():
            await stop_processes_in(path)
            target = checkpoint if checkpoint and await _has_commit(path, checkpoint) else "HEAD"
            await git("reset", "--quiet", "--hard", target, cwd=path)
            await git("clean", "--quiet", "-fd", cwd=path)
            return path
        ref = checkpoint_ref(run_id)
        async with self.locked(repo):
            mirror = await self._ensure_mirror_locked(repo)
            try:
                await git("fetch", "--quiet", "origin", f"+{ref}:{ref}", cwd=mirror, token=await self._token(repo))
                start = ref
            except GitError:
                pushed = await git("rev-parse", "--verify", "--quiet", f"refs/remotes/origin/{branch}", cwd=mirror,
                                   check=False)
                start = f"refs/remotes/origin/{branch}" if pushed.exit_code == 0 else f"refs/remotes/origin/{base}"
            return await self._add_locked(mirror, run_id, branch, start)

    async def _add(self, run_id: str, repo: str, branch: str, start: str) -> Path:
        async with self.locked(repo):
            mirror = await self._ensure_mirror_locked(repo)
            return await self._add_locked(mirror, run_id, branch, start)

    async def _add_locked(self, mirror: Path, run_id: str, branch: str, start: str) -> Path:
        if not branch.startswith(BRANCH_PREFIX):
            raise ValueError(f"refusing to manage branch {branch!r}")
        path = self.worktree_path(run_id)
        if path.exists():
            await git("worktree", "remove", "--force", str(path), cwd=mirror, check=False)
            shutil.rmtree(path, ignore_errors=True)
        await git("worktree", "prune", cwd=mirror)
        path.parent.mkdir(parents=True, exist_ok=True)
        await git("worktree", "add", "--quiet", "--no-track", "-B", branch, str(path), start, cwd=mirror)
        return path

    async def remove(self, run_id: str, repo: str | None = None) -> None:
        """Remove the run's worktree (and its local branch); missing is fine."""
        path = self.worktree_path(run_id)
        mirror = self.mirror_path(repo) if repo else _mirror_of(path)
        if mirror is None or not mirror.exists():
            shutil.rmtree(path, ignore_errors=True)
            return
        lock_repo = repo or _repo_of_mirror(self.root, mirror)
        async with self.locked(lock_repo):
            branch = None
            if (path / ".git").exists():
                result = await git("symbolic-ref", "--quiet", "--short", "HEAD", cwd=path, check=False)
                branch = result.stdout.strip() or None
            await git("worktree", "remove", "--force", str(path), cwd=mirror, check=False)
            shutil.rmtree(path, ignore_errors=True)
            await git("worktree", "prune", cwd=mirror)
            if branch and branch.startswith(BRANCH_PREFIX):
                await git("branch", "-D", branch, cwd=mirror, check=False)

    # Work in a worktree --------------------------------------------------

    async def checkpoint(self, run_id: str, repo: str, path: Path) -> str:
        """Commit WIP (if any) and push it to the run's checkpoint ref; returns the SHA."""
        await git("add", "-A", cwd=path)
        if (await git("diff", "--cached", "--quiet", cwd=path, check=False)).exit_code != 0:
            await git("commit", "--quiet", "--no-verify", "-m", f"WIP checkpoint for run {run_id}", cwd=path)
        sha = await git_out("rev-parse", "HEAD", cwd=path)
        await git(
            "push", "--quiet", "--force", "origin", f"HEAD:{checkpoint_ref(run_id)}",
            cwd=path, token=await self._token(repo),
        )
        return sha

    async def delete_checkpoint(self, run_id: str, repo: str) -> None:
        """Delete the run's checkpoint ref on the remote (after a terminal state)."""
        mirror = self.mirror_path(repo)
        if mirror.exists():
            await git("push", "--quiet", "origin", f":{checkpoint_ref(run_id)}", cwd=mirror,
                      token=await self._token(repo), check=False)

    async def merge_base(self, path: Path, base: str) -> str:
        return await git_out("merge-base", f"refs/remotes/origin/{base}", "HEAD", cwd=path)

    async def changed_files(self, path: Path, base: str) -> list[str]:
        """Files changed by the run: committed since the merge-base, modified, and untracked."""
        committed = await git_out("diff", "--name-only", f"refs/remotes/origin/{base}...HEAD", cwd=path)
        modified = await git_out("diff", "--name-only", "HEAD", cwd=path)
        untracked = await git_out("ls-files", "--others", "--exclude-standard", cwd=path)
        names = {line for chunk in (committed, modified, untracked) for line in chunk.splitlines() if line}
        return sorted(names)

    async def diff(self, path: Path, base: str, *, limit: int = 60_000) -> str:
        """The run's full diff against the merge-base (including untracked files), truncated."""
        await git("add", "-A", "--intent-to-add", cwd=path, check=False)
        mb = await self.merge_base(path, base)
        text = (await git("diff", mb, cwd=path)).stdout
        return text if len(text) <= limit else text[:limit] + "\n… diff truncated …\n"

    async def push_branch(self, repo: str, path: Path, branch: str) -> str:
        """Push HEAD to the run's own ``agent-z/`` branch with ``--force-with-lease``; returns the SHA."""
        if not branch.startswith(BRANCH_PREFIX):
            raise ValueError(f"refusing to push to {branch!r}")
        token = await self._token(repo)
        head = await git_out("rev-parse", "HEAD", cwd=path)
        remote = await git_out("ls-remote", "origin", f"refs/heads/{branch}", cwd=path, token=token)
        remote_sha = remote.split()[0] if remote else ""
        if remote_sha == head:
            return head
        await git(
            "push", "--quiet", f"--force-with-lease=refs/heads/{branch}:{remote_sha}", "origin",
            f"HEAD:refs/heads/{branch}", cwd=path, token=token,
        )
        return head

    # Garbage collection --------------------------------------------------

    async def gc(self, db: Database) -> list[str]:
        """Remove worktrees whose run is terminal or missing; prune stale ``agent-z/*`` branches."""
        removed: list[str] = []
        worktrees_dir = self.root / "worktrees"
        names = sorted(p.name for p in worktrees_dir.iterdir()) if worktrees_dir.exists() else []
        with db.read() as session:
            rows = session.execute(select(Run.id, Run.status, Run.repo, Run.branch)).all()
        live_runs = {row.id for row in rows if row.status not in states.TERMINAL}
        live_branches = {row.branch for row in rows if row.status not in states.TERMINAL and row.branch}
        repo_of = {row.id: row.repo for row in rows}
        for name in names:
            if name in live_runs:
                continue
            if not _RUN_ID_RE.match(name):
                shutil.rmtree(worktrees_dir / name, ignore_errors=True)
                removed.append(name)
                continue
            await self.remove(name, repo_of.get(name))
            removed.append(name)
        mirrors_dir = self.root / "mirrors"
        for mirror in sorted(mirrors_dir.glob("*/*.git")) if mirrors_dir.exists() else []:
            repo = _repo_of_mirror(self.root, mirror)
            async with self.locked(repo):
                await git("worktree", "prune", cwd=mirror)
                listed = await git_out("for-each-ref", "--format=%(refname:short)", "refs/heads/agent-z/", cwd=mirror)
                checked_out = await _checked_out_branches(mirror)
                for branch in listed.splitlines():
                    if branch and branch not in live_branches and branch not in checked_out:
                        await git("branch", "-D", branch, cwd=mirror, check=False)
        if removed:
            log.info("worktrees collected", removed=removed)
        return removed


def processes_in(path: Path) -> list[int]:
    """Pids of this host's processes whose working directory is inside ``path`` (Linux /proc)."""
    root = str(path.resolve())
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if (cwd == root or cwd.startswith(root + os.sep)) and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


async def stop_processes_in(path: Path, *, timeout: float = 5.0) -> list[int]:
    """Kill what a dead attempt left running in its worktree (an orphaned agent still editing files).

    The caller holds the run's lease, so anything working there belongs to an attempt
    that lost it.
    """
    pids = processes_in(path)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline and any(_running(pid) for pid in pids):
        await asyncio.sleep(0.05)
    if pids:
        log.warning("stopped processes left in a worktree", path=str(path), pids=pids)
    return pids


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


async def _has_commit(path: Path, sha: str) -> bool:
    found = await git("cat-file", "-e", f"{sha}^{{commit}}", cwd=path, check=False)
    return found.exit_code == 0


async def _checked_out_branches(mirror: Path) -> set[str]:
    listing = await git_out("worktree", "list", "--porcelain", cwd=mirror)
    return {
        line.removeprefix("branch refs/heads/") for line in listing.splitlines() if line.startswith("branch ")
    }


def _mirror_of(path: Path) -> Path | None:
    """The mirror a worktree belongs to, read from its ``.git`` file."""
    try:
        content = (path / ".git").read_text().strip()
    except OSError:
        return None
    if not content.startswith("gitdir:"):
        return None
    gitdir = Path(content.removeprefix("gitdir:").strip())
    return gitdir.parent.parent if gitdir.parent.name == "worktrees" else None


def _repo_of_mirror(root: Path, mirror: Path) -> str:
    relative = mirror.resolve().relative_to(root / "mirrors")
    return f"{relative.parts[0]}/{relative.parts[1].removesuffix('.git')}"
