"""Simulated CI: run a command on a pushed commit, with bounded concurrency."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from agentz_app.errors import AgentTimeout
from agentz_app.fakehub.gitrepos import export_commit
from workers.procs import run_process

DEFAULT_CI_COMMAND = f"{shlex.quote(sys.executable)} -m pytest -q -p no:cacheprovider"
SUMMARY_LIMIT = 65535


@dataclass(frozen=True)
class CiJob:
    """One CI run: a commit of a repository's branch."""

    full_name: str
    repo_path: Path
    branch: str
    sha: str
    before: str
    command: str
    suite_id: int
    run_id: int


@dataclass(frozen=True)
class CiOutcome:
    """How a CI run ended."""

    conclusion: str
    exit_code: int
    tail: str


def tail_text(text: str, *, lines: int = 60, limit: int = 60000) -> str:
    """The last ``lines`` lines of ``text``, at most ``limit`` characters."""
    tail = "\n".join(text.rstrip("\n").splitlines()[-lines:])
    return tail[-limit:]


def summary_for(outcome: CiOutcome, command: str) -> str:
    """Markdown summary of a CI run: command, exit code and output tail."""
    text = f"`{command}` exited with {outcome.exit_code}.\n\n```\n{outcome.tail}\n```\n"
    return text[:SUMMARY_LIMIT]


def ci_env() -> dict[str, str]:
    """The environment of a CI command: ours, minus secrets and pytest/git internals."""
    env = {}
    for key, value in os.environ.items():
        upper = key.upper()
        if upper.startswith(("PYTEST_", "GIT_", "GITHUB_", "AGENTZ_")) or "SECRET" in upper or "TOKEN" in upper:
            continue
        env[key] = value
    return env


async def run_ci(job: CiJob, *, timeout: float) -> CiOutcome:
    """Check out the job's commit into a temp dir, run its command, report the outcome."""
    with tempfile.TemporaryDirectory(prefix="fakehub-ci-") as tmp:
        work = Path(tmp) / "src"
        await export_commit(job.repo_path, job.sha, work)
        try:
            result = await run_process(["/bin/sh", "-c", job.command], cwd=work, env=ci_env(), timeout=timeout)
        except AgentTimeout:
            return CiOutcome("timed_out", -1, f"CI timed out after {timeout:.0f}s")
        output = result.stdout + (("\n" + result.stderr) if result.stderr.strip() else "")
        return CiOutcome("success" if result.exit_code == 0 else "failure", result.exit_code, tail_text(output))


StartHook = Callable[[CiJob], Awaitable[None]]
FinishHook = Callable[[CiJob, CiOutcome], Awaitable[None]]


class CiRunner:
    """Queue CI jobs and run at most ``concurrency`` at a time, reporting through hooks."""

    def __init__(self, *, on_start: StartHook, on_finish: FinishHook, concurrency: int = 1,
                 timeout: float = 300.0) -> None:
        self.on_start = on_start
        self.on_finish = on_finish
        self.timeout = timeout
        self._limit = asyncio.Semaphore(max(1, min(concurrency, 2)))
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        """Jobs queued or running."""
        return len(self._tasks)

    def submit(self, job: CiJob) -> None:
        """Schedule a job."""
        task = asyncio.create_task(self._run(job), name=f"fakehub-ci-{job.sha[:8]}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, job: CiJob) -> None:
        async with self._limit:
            await self.on_start(job)
            try:
                outcome = await run_ci(job, timeout=self.timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # report an infrastructure failure as a failed check
                outcome = CiOutcome("failure", -1, f"CI could not run: {exc}")
            await self.on_finish(job, outcome)

    async def stop(self) -> None:
        """Cancel every job (killing its process group) and wait for them."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
