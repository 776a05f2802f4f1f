"""Retention of files under STATE_DIR: run log folders, agent homes and repository mirrors.

Layout (written by ``workers/``)::

    logs/runs/<run_id>/                 one log file per agent role
    agent-homes/<backend>/<key>/        private HOME of the agents working in one workdir
    mirrors/<owner>/<name>.git          bare mirror (``<name>.lock`` next to it)

Listing reads the disk, the ``*_due`` functions decide without I/O, :func:`remove`
deletes. Nothing here follows a symbolic link: an agent can plant links in its home,
and pruning must delete the link, never what it points to.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from agentz_app.domain.states import TERMINAL

_CLOCK_SLACK_SECONDS = 3600.0  # mtimes up to an hour ahead count (hosts' clocks differ a little)


@dataclass(frozen=True)
class Folder:
    """A folder found under STATE_DIR: its key (run id, home key, ``owner/name``), newest mtime and size."""

    path: Path
    key: str
    mtime: float
    size: int


@dataclass(frozen=True)
class RunFacts:
    """What the retention decisions need to know about a run."""

    status: str
    finished_at: float | None


@dataclass(frozen=True)
class Removed:
    """How many things were (or would be) removed and how many bytes they held."""

    count: int = 0
    bytes: int = 0

    def __add__(self, other: Removed) -> Removed:
        return Removed(self.count + other.count, self.bytes + other.bytes)


# Pure decisions ----------------------------------------------------------------------


def home_key(workdir: Path) -> str:
    """The agent-home key of ``workdir``; the same hash as ``workers.runners.cli.agent_home``."""
    return hashlib.sha256(str(workdir.resolve()).encode()).hexdigest()[:20]


def run_logs_due(folders: Iterable[Folder], runs: Mapping[str, RunFacts], cutoff: float) -> list[Folder]:
    """Log folders of runs that finished before ``cutoff``; a folder of an unknown run goes by its mtime."""
    due = []
    for folder in folders:
        run = runs.get(folder.key)
        if run is None:
            expired = folder.mtime < cutoff
        else:
            expired = run.status in TERMINAL and run.finished_at is not None and run.finished_at < cutoff
        if expired:
            due.append(folder)
    return due


def agent_homes_due(homes: Iterable[Folder], cutoff: float, *, protected: set[str]) -> list[Folder]:
    """Homes not touched since ``cutoff`` whose key is not a live run's workdir."""
    return [home for home in homes if home.mtime < cutoff and home.key not in protected]


def mirrors_due(mirrors: Iterable[Folder], *, uninstalled: set[str], installed: set[str],
                busy: set[str]) -> list[Folder]:
    """Mirrors of repositories no longer installed that no live run uses (names compared case-blind)."""
    gone = {name.lower() for name in uninstalled} - {name.lower() for name in installed}
    in_use = {name.lower() for name in busy}
    return [m for m in mirrors if m.key.lower() in gone and m.key.lower() not in in_use]


# Reading the disk ----------------------------------------------------------------------


def measure(path: Path, *, not_after: float) -> tuple[float, int]:
    """Newest mtime and total size of ``path`` and everything below it, never following links.

    Mtimes later than ``not_after`` are ignored: a file dated in the future (an agent
    can set any date on its own files) must not keep a folder forever.
    """
    newest = 0.0
    total = 0
    for entry_stat in _walk(path):
        if entry_stat.st_mtime <= not_after:
            newest = max(newest, entry_stat.st_mtime)
        total += entry_stat.st_size
    return newest, total


def _walk(path: Path) -> Iterator[os.stat_result]:
    try:
        top = path.lstat()
    except OSError:
        return
    yield top
    if not stat.S_ISDIR(top.st_mode):
        return
    stack = [str(path)]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as entries:
                for entry in entries:
                    try:
                        entry_stat = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    yield entry_stat
                    if stat.S_ISDIR(entry_stat.st_mode):
                        stack.append(entry.path)
        except OSError:
            continue


def _folder(path: Path, key: str, at: float) -> Folder:
    mtime, size = measure(path, not_after=at + _CLOCK_SLACK_SECONDS)
    return Folder(path, key, mtime, size)


def _subfolders(path: Path) -> list[Path]:
    if not path.is_dir() or path.is_symlink():
        return []
    return sorted(child for child in path.iterdir() if child.is_dir() and not child.is_symlink())


def list_run_logs(logs_dir: Path, *, at: float) -> list[Folder]:
    """``logs/runs/<run_id>`` folders keyed by run id (``at`` is the current time)."""
    return [_folder(path, path.name, at) for path in _subfolders(logs_dir / "runs")]


def list_agent_homes(state_dir: Path, *, at: float) -> list[Folder]:
    """``agent-homes/<backend>/<key>`` folders keyed by home key."""
    return [_folder(home, home.name, at) for backend in _subfolders(state_dir / "agent-homes")
            for home in _subfolders(backend)]


def list_mirrors(state_dir: Path, *, at: float) -> list[Folder]:
    """``mirrors/<owner>/<name>.git`` folders keyed by ``owner/name``."""
    return [_folder(mirror, f"{owner.name}/{mirror.name.removesuffix('.git')}", at)
            for owner in _subfolders(state_dir / "mirrors")
            for mirror in _subfolders(owner) if mirror.name.endswith(".git")]


# Deleting ------------------------------------------------------------------------------


def remove(folders: Iterable[Folder], *, dry_run: bool = False) -> Removed:
    """Delete each folder (links inside are removed, not followed); returns what went."""
    removed = Removed()
    for folder in folders:
        if dry_run or _delete_tree(folder.path):
            removed += Removed(1, folder.size)
    return removed


def _delete_tree(path: Path) -> bool:
    """Remove ``path`` recursively, also when an agent made folders inside read-only; True when gone."""
    shutil.rmtree(path, ignore_errors=True)
    if not os.path.lexists(path):
        return True
    _make_writable(path)
    shutil.rmtree(path, ignore_errors=True)
    return not os.path.lexists(path)


def _make_writable(path: Path) -> None:
    """Give the owner rwx on every real folder under ``path`` (links are neither followed nor changed)."""
    pending = [str(path)]
    while pending:
        current = pending.pop()
        with contextlib.suppress(OSError):
            mode = os.lstat(current).st_mode
            if not stat.S_ISDIR(mode):
                continue
            os.chmod(current, stat.S_IMODE(mode) | stat.S_IRWXU)
            with os.scandir(current) as entries:
                pending.extend(entry.path for entry in entries if entry.is_dir(follow_symlinks=False))


def remove_mirrors(mirrors: Iterable[Folder], *, dry_run: bool = False) -> Removed:
    """Delete mirrors under their ``<name>.lock`` flock; a mirror whose lock is held is left alone."""
    if dry_run:
        return remove(mirrors, dry_run=True)
    removed = Removed()
    for mirror in mirrors:
        lock_path = mirror.path.with_suffix(".lock")
        with _try_lock(lock_path) as locked:
            if not locked:
                continue
            gone = remove([mirror])
            if gone.count:
                lock_path.unlink(missing_ok=True)
            removed += gone
    return removed


@contextlib.contextmanager
def _try_lock(lock_path: Path) -> Iterator[bool]:
    """Hold the mirror's flock if nobody else does (the lock ``workers.worktrees`` takes)."""
    try:
        handle = open(lock_path, "a+")  # noqa: SIM115 - held across the yield
    except OSError:
        yield False
        return
    with handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
