"""Trusted mirrors per repository and one untrusted working copy per run.

Layout under ``state_dir``::

    mirrors/<owner>/<name>.git      bare mirror, remote-tracking refs under refs/remotes/origin;
                                    only trusted code uses it (fetch, commit, push)
    mirrors/<owner>/<name>.lock     flock held around fetches
    worktrees/<run_id>              the run's working copy: its own small repository whose
                                    objects are borrowed read-only from the mirror (alternates)
    staging/<run_id>.git            where trusted git reads the working copy; its objects enter
                                    the mirror only once the content policy passed

The agent may do anything in its working copy, including its ``.git``. Trusted
code therefore never runs git *in* it: :meth:`Worktrees.snapshot` reads the files
into the run's staging repository (borrowing the mirror's objects) with the working copy
as ``GIT_WORK_TREE`` (so the agent's ``.git``, hooks and config are never consulted).
Working copies can read the mirror's objects, so a refused file must never land there:
only :meth:`Worktrees.checkpoint`, after the policy check, brings a snapshot's objects
into the mirror. Commits are made with ``commit-tree`` and pushes go from the mirror
with the token only in that git process. Checkpoints are commits on
``refs/agent-z/runs/<run_id>``, pushed so that another host can resume the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import shutil
import signal
import tempfile
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sqlalchemy import select

from agentz_app.config import Settings
from agentz_app.domain import states
from agentz_app.errors import AgentZError
from agentz_app.logs import get_logger
from agentz_app.store.db import Database
from agentz_app.store.models import Run
from workers.content_policy import Change
from workers.gitops import AUTHOR_EMAIL, AUTHOR_NAME, GitError, RemoteRetry, git, git_out, git_remote

BRANCH_PREFIX = "agent-z/"
CHECKPOINT_PREFIX = "refs/agent-z/runs/"
MAX_BRANCH_LENGTH = 60
STOP_WAIT_SECONDS = 5.0  # how long a killed leftover process may take to exit
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


class ForeignBranch(AgentZError):
    """A branch that is not an ``agent-z/`` branch: trusted code neither builds on nor pushes to it."""


@dataclass(frozen=True)
class Snapshot:
    """The agent's working copy as trusted git read it.

    ``tree`` is the files; ``base`` the commit the run's change is measured from (where
    it left the default branch); ``parent`` the commit the next commit builds on (the
    pushed head, else ``base``); ``changes`` every path that differs from ``base``.
    """

    tree: str
    base: str
    parent: str
    changes: tuple[Change, ...]

    @property
    def changed_paths(self) -> list[str]:
        return sorted(change.path for change in self.changes)


class Worktrees:
    """Mirrors and per-run working copies under ``settings.state_dir``."""

    def __init__(self, settings: Settings, *, token_provider: TokenProvider | None = None) -> None:
        self.settings = settings
        self.root = Path(settings.state_dir).resolve()
        self._token_provider = token_provider or _no_token
        self.remote_retry = RemoteRetry(attempts=settings.github_retry_attempts)

    # Paths ---------------------------------------------------------------

    def mirror_path(self, repo: str) -> Path:
        owner, name = _checked_repo(repo).split("/")
        return self.root / "mirrors" / owner / f"{name}.git"

    def objects_path(self, repo: str) -> Path:
        """The mirror's object store, which working copies borrow from (read-only to agents)."""
        return self.mirror_path(repo) / "objects"

    def worktree_path(self, run_id: str) -> Path:
        return self.root / "worktrees" / _checked_run_id(run_id)

    def staging_path(self, run_id: str) -> Path:
        return self.root / "staging" / f"{_checked_run_id(run_id)}.git"

    async def _staging(self, run_id: str, repo: str) -> Path:
        """The run's staging repository: trusted, never visible to an agent, borrowing the mirror's objects."""
        staging = self.staging_path(run_id)
        if not (staging / "HEAD").exists():
            staging.mkdir(parents=True, exist_ok=True)
            await git("init", "--bare", "--quiet", str(staging), cwd=staging.parent)
        (staging / "objects" / "info" / "alternates").write_text(f"{self.objects_path(repo)}\n")
        return staging

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
        handle = await asyncio.to_thread(_open_lock_file, lock_path)
        with handle:
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

    async def _ensure_mirror_locked(self, repo: str) -> Path:
        mirror = self.mirror_path(repo)
        if not (mirror / "HEAD").exists():
            if mirror.exists():
                shutil.rmtree(mirror)
            mirror.mkdir(parents=True)
            await git("init", "--bare", "--quiet", str(mirror), cwd=mirror.parent)
            await git("config", "remote.origin.url", self.remote_url(repo), cwd=mirror)
            await git("config", "remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*", cwd=mirror)
        await git_remote("fetch", "--quiet", "--prune", "origin", cwd=mirror, token=await self._token(repo),
                         retry=self.remote_retry)
        return mirror

    async def ensure_mirror(self, repo: str) -> Path:
        """Clone the bare mirror on first use, otherwise fetch it."""
        async with self.locked(repo):
            return await self._ensure_mirror_locked(repo)

    async def _fetch_checkpoint(self, repo: str, mirror: Path, run_id: str) -> str | None:
        """The run's checkpoint commit, fetched from the remote (another host may have pushed it)."""
        ref = checkpoint_ref(run_id)
        fetched = await git_remote("fetch", "--quiet", "origin", f"+{ref}:{ref}", cwd=mirror,
                                   token=await self._token(repo), check=False, retry=self.remote_retry)
        if fetched.exit_code != 0:
            return None
        return await _resolve(mirror, ref)

    # Working copies ------------------------------------------------------

    async def create(self, run_id: str, repo: str, branch: str, base: str) -> Path:
        """A fresh working copy for the run on ``branch``, started from ``origin/<base>``."""
        async with self.locked(repo):
            mirror = await self._ensure_mirror_locked(repo)
        return await self._build(mirror, run_id, branch, base, f"refs/remotes/origin/{base}")

    async def resume(self, run_id: str, repo: str, branch: str, base: str, *, checkpoint: str | None = None) -> Path:
        """The run's working copy, rebuilt for a stage to start.

        Whatever an interrupted attempt left is dropped (not known to be good, and another
        host would not see it): the copy is rebuilt from the checkpoint (fetched from the
        remote when this host's mirror lacks it), else the pushed branch, else ``base``.
        """
        async with self.locked(repo):
            mirror = await self._ensure_mirror_locked(repo)
            start = await _resolve(mirror, checkpoint) if checkpoint else None
            if start is None:
                start = await self._fetch_checkpoint(repo, mirror, run_id)
                if checkpoint and start is not None and start != checkpoint:
                    log.warning("recorded checkpoint not found; using the remote checkpoint ref",
                                run_id=run_id, recorded=checkpoint, remote=start)
            if start is None:
                pushed = await _resolve(mirror, f"refs/remotes/origin/{branch}")
                start = pushed or f"refs/remotes/origin/{base}"
        return await self._build(mirror, run_id, branch, base, start)

    async def _build(self, mirror: Path, run_id: str, branch: str, base: str, start: str) -> Path:
        if not branch.startswith(BRANCH_PREFIX):
            raise ForeignBranch(f"refusing to work on {branch!r}: not an Agent-Z branch")
        path = self.worktree_path(run_id)
        await self._discard(path)
        path.mkdir(parents=True)
        start_sha = await git_out("rev-parse", "--verify", f"{start}^{{commit}}", cwd=mirror)
        base_sha = await git_out("rev-parse", "--verify", f"refs/remotes/origin/{base}^{{commit}}", cwd=mirror)
        # A fresh repository no agent has touched yet: safe for trusted git until the agent starts.
        await git("init", "--quiet", str(path), cwd=path.parent)
        (path / ".git" / "objects" / "info" / "alternates").write_text(f"{mirror / 'objects'}\n")
        await git("config", "user.name", AUTHOR_NAME, cwd=path)
        await git("config", "user.email", AUTHOR_EMAIL, cwd=path)
        await git("update-ref", f"refs/remotes/origin/{base}", base_sha, cwd=path)
        await git("checkout", "--quiet", "-B", branch, start_sha, cwd=path)
        return path

    async def _discard(self, path: Path) -> None:
        if await asyncio.to_thread(path.exists):
            await stop_processes_in(path)
            await asyncio.to_thread(shutil.rmtree, path, True)

    async def remove(self, run_id: str, repo: str | None = None) -> None:
        """Remove the run's working copy and staging repository; missing is fine."""
        await self._discard(self.worktree_path(run_id))
        await asyncio.to_thread(shutil.rmtree, self.staging_path(run_id), True)

    # Reading the agent's result ------------------------------------------

    async def snapshot(self, run: Run, path: Path) -> Snapshot:
        """Read the working copy's files into the mirror as a tree, without using the agent's ``.git``.

        ``.gitignore`` rules of the working copy apply (as for ``git add -A``); nothing under
        any ``.git`` is read; symbolic links are stored as links, never followed.
        """
        base_branch = run.base_branch or "main"
        seed = run.checkpoint_sha or run.head_sha or f"refs/remotes/origin/{base_branch}"
        base = await self.merge_base(run.repo, base_branch, seed)
        parent = run.head_sha or base
        staging = await self._staging(run.id, run.repo)
        seed_sha = await git_out("rev-parse", "--verify", f"{seed}^{{commit}}", cwd=self.mirror_path(run.repo))
        work_tree = await asyncio.to_thread(path.resolve)
        with tempfile.TemporaryDirectory(dir=staging, prefix="index-") as scratch:
            env = {"GIT_DIR": str(staging), "GIT_WORK_TREE": str(work_tree),
                   "GIT_INDEX_FILE": str(Path(scratch) / "index")}
            await git("read-tree", seed_sha, cwd=staging, env=env)
            await git("add", "--all", "--", ".", cwd=staging, env=env)
            tree = await git_out("write-tree", cwd=staging, env=env)
        return Snapshot(tree, base, parent, tuple(await self._changes(staging, base, tree)))

    async def _changes(self, mirror: Path, base: str, tree: str) -> list[Change]:
        listing = (await git("diff-tree", "-r", "-z", "--no-renames", base, tree, cwd=mirror)).stdout
        fields = listing.split("\0")
        entries: list[tuple[str, str, str]] = []
        for meta, name in zip(fields[0::2], fields[1::2], strict=False):
            if meta.startswith(":"):
                _, new_mode, _, new_sha, _ = meta[1:].split(" ")
                entries.append((name, new_mode, new_sha))
        blobs = [(name, mode, sha) for name, mode, sha in entries if mode not in ("000000", "160000")]
        sizes: dict[str, int] = {}
        if blobs:
            answer = (await git("cat-file", "--batch-check=%(objectname) %(objectsize)", cwd=mirror,
                                stdin="".join(f"{sha}\n" for _, _, sha in blobs))).stdout
            sizes = {sha: int(size) for sha, size in (line.split() for line in answer.splitlines())}
        small = [name for name, _, sha in blobs if sizes[sha] <= self.settings.max_file_bytes]
        contents = await self._read_blobs(mirror, tree, small)
        return [Change(name, mode, sizes.get(sha, 0), contents.get(name)) for name, mode, sha in entries]

    async def _read_blobs(self, mirror: Path, tree: str, names: list[str]) -> dict[str, bytes]:
        """The bytes of ``names`` in ``tree`` (a symlink's target for links), checked out into a scratch folder."""
        if not names:
            return {}
        with tempfile.TemporaryDirectory(prefix="agentz-blobs-") as scratch:
            root = Path(scratch)
            env = {"GIT_DIR": str(mirror), "GIT_WORK_TREE": str(root / "files"), "GIT_INDEX_FILE": str(root / "index")}
            (root / "files").mkdir()
            await git("read-tree", tree, cwd=root, env=env)
            # A name git cannot check out here stays unread; the caller treats it as a violation.
            await git("checkout-index", "--force", "-z", "--stdin", cwd=root / "files", env=env,
                      stdin="".join(f"{name}\0" for name in names), check=False)
            found: dict[str, bytes] = {}
            for name in names:
                path = root / "files" / name
                if path.is_symlink():
                    found[name] = os.fsencode(os.readlink(path))
                elif path.is_file():
                    found[name] = path.read_bytes()
            return found

    async def checkpoint(self, run_id: str, repo: str, snapshot: Snapshot) -> str:
        """Commit a snapshot that passed the content policy, bring it into the mirror, push the checkpoint ref."""
        staging = await self._staging(run_id, repo)
        sha = await self.commit_tree(repo, snapshot.tree, snapshot.parent, f"WIP checkpoint for run {run_id}\n",
                                     where=staging)
        await git("update-ref", "refs/agent-z/checkpoint", sha, cwd=staging)
        await git("fetch", "--quiet", "--no-tags", str(staging), f"+refs/agent-z/checkpoint:{checkpoint_ref(run_id)}",
                  cwd=self.mirror_path(repo))
        await self.point_checkpoint(run_id, repo, sha)
        return sha

    async def point_checkpoint(self, run_id: str, repo: str, sha: str) -> None:
        """Set the run's checkpoint ref to ``sha`` here and on the remote."""
        mirror = self.mirror_path(repo)
        ref = checkpoint_ref(run_id)
        await git("update-ref", ref, sha, cwd=mirror)
        await git_remote("push", "--quiet", "--force", "origin", f"{sha}:{ref}", cwd=mirror,
                         token=await self._token(repo), retry=self.remote_retry)

    async def commit_tree(self, repo: str, tree: str, parent: str, message: str, *, date: str | None = None,
                          where: Path | None = None) -> str:
        """A commit of ``tree`` on ``parent`` (in the mirror, or ``where``); the same inputs give the same SHA."""
        mirror = self.mirror_path(repo)
        when = date or await git_out("log", "-1", "--format=%cI", parent, cwd=mirror)
        env = {"GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when}
        return (await git("commit-tree", tree, "-p", parent, "-F", "-", cwd=where or mirror, stdin=message,
                          env=env)).stdout.strip()

    async def rebase_checkpoint(self, run_id: str, repo: str, base_branch: str, checkpoint: str) -> str | None:
        """Re-base the checkpoint's change onto the current ``origin/<base_branch>``, in the mirror.

        A three-way merge of trees (``git merge-tree --write-tree``) with no working copy:
        the agent's repository is never touched. Returns the new checkpoint (a commit on
        the new base, also pushed as the run's checkpoint ref), the old one when the base
        did not move, or None when the change conflicts with the new base.
        """
        async with self.locked(repo):
            mirror = await self._ensure_mirror_locked(repo)
            head = f"refs/remotes/origin/{base_branch}"
            new_base = await git_out("rev-parse", "--verify", f"{head}^{{commit}}", cwd=mirror)
            if await git_out("merge-base", head, checkpoint, cwd=mirror) == new_base:
                return checkpoint
            merged = await git("merge-tree", "--write-tree", "--no-messages", new_base, checkpoint, cwd=mirror,
                               check=False)
            if merged.exit_code == 1:
                return None
            if merged.exit_code != 0:
                raise GitError(["merge-tree", "--write-tree"], merged.exit_code, merged.stderr)
            tree = merged.stdout.split()[0]
        sha = await self.commit_tree(repo, tree, new_base, f"WIP checkpoint for run {run_id} (rebased)\n")
        await self.point_checkpoint(run_id, repo, sha)
        return sha

    async def delete_checkpoint(self, run_id: str, repo: str) -> None:
        """Delete the run's checkpoint ref here and on the remote (after a terminal state)."""
        mirror = self.mirror_path(repo)
        if mirror.exists():
            await git("update-ref", "-d", checkpoint_ref(run_id), cwd=mirror, check=False)
            await git_remote("push", "--quiet", "origin", f":{checkpoint_ref(run_id)}", cwd=mirror,
                             token=await self._token(repo), check=False, retry=self.remote_retry)

    async def merge_base(self, repo: str, base_branch: str, commit: str) -> str:
        """Where ``commit`` left ``origin/<base_branch>``."""
        return await git_out("merge-base", f"refs/remotes/origin/{base_branch}", commit,
                             cwd=self.mirror_path(repo))

    async def tree_of(self, repo: str, commit: str) -> str:
        return await git_out("rev-parse", f"{commit}^{{tree}}", cwd=self.mirror_path(repo))

    async def changed_files(self, repo: str, base_branch: str, commit: str) -> list[str]:
        """Files ``commit`` changes since it left the default branch."""
        base = await self.merge_base(repo, base_branch, commit)
        names = await git_out("diff", "--name-only", "--no-renames", base, commit, cwd=self.mirror_path(repo))
        return sorted(line for line in names.splitlines() if line)

    async def diff(self, repo: str, base_branch: str, commit: str, *, limit: int = 60_000) -> str:
        """The run's diff since it left the default branch, truncated."""
        base = await self.merge_base(repo, base_branch, commit)
        text = (await git("diff", "--no-renames", "--no-ext-diff", "--no-textconv", base, commit,
                          cwd=self.mirror_path(repo))).stdout
        return text if len(text) <= limit else text[:limit] + "\n… diff truncated …\n"

    async def push_branch(self, repo: str, sha: str, branch: str) -> str:
        """Push ``sha`` from the mirror to the run's own ``agent-z/`` branch with a lease; returns it."""
        if not branch.startswith(BRANCH_PREFIX):
            raise ForeignBranch(f"refusing to push to {branch!r}: not an Agent-Z branch")
        mirror = self.mirror_path(repo)
        token = await self._token(repo)
        listed = await git_remote("ls-remote", "origin", f"refs/heads/{branch}", cwd=mirror, token=token,
                                  retry=self.remote_retry)
        remote = listed.stdout.strip()
        remote_sha = remote.split()[0] if remote else ""
        if remote_sha == sha:
            return sha
        await git_remote(
            "push", "--quiet", f"--force-with-lease=refs/heads/{branch}:{remote_sha}", "origin",
            f"{sha}:refs/heads/{branch}", cwd=mirror, token=token, retry=self.remote_retry,
        )
        return sha

    # Garbage collection --------------------------------------------------

    async def gc(self, db: Database) -> list[str]:
        """Remove working copies (and staging repositories) whose run is terminal or missing."""
        removed: list[str] = []
        worktrees_dir = self.root / "worktrees"
        names = sorted(p.name for p in worktrees_dir.iterdir()) if worktrees_dir.exists() else []
        staging_dir = self.root / "staging"
        staged = {p.name.removesuffix(".git") for p in staging_dir.iterdir()} if staging_dir.exists() else set()
        names = sorted(set(names) | {name for name in staged if _RUN_ID_RE.match(name)})
        live_runs = await db.run(_live_run_ids, db)
        for name in names:
            if name in live_runs:
                continue
            if _RUN_ID_RE.match(name):
                await self.remove(name)
            else:
                shutil.rmtree(worktrees_dir / name, ignore_errors=True)
            removed.append(name)
        if removed:
            log.info("worktrees collected", removed=removed)
        return removed


def _live_run_ids(db: Database) -> set[str]:
    with db.read() as session:
        rows = session.execute(select(Run.id, Run.status)).all()
    return {run_id for run_id, status in rows if status not in states.TERMINAL}


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


async def stop_processes_in(path: Path) -> list[int]:
    """Kill what a dead attempt left running in its worktree (an orphaned agent still editing files).

    The caller holds the run's lease, so anything working there belongs to an attempt
    that lost it. Waits up to STOP_WAIT_SECONDS for them to exit.
    """
    pids = processes_in(path)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(STOP_WAIT_SECONDS):
            await asyncio.gather(*(_exit_of(pid) for pid in pids))
    if pids:
        log.warning("stopped processes left in a worktree", path=str(path), pids=pids)
    return pids


async def _exit_of(pid: int) -> None:
    """Wait until ``pid`` has exited (a zombie waiting to be reaped has): its pidfd becomes readable."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(pidfd, readable)
    try:
        await exited
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)


def _open_lock_file(lock_path: Path) -> IO[str]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    return open(lock_path, "a+")


async def _resolve(repo: Path, ref: str) -> str | None:
    found = await git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", cwd=repo, check=False)
    return found.stdout.strip() or None if found.exit_code == 0 else None
