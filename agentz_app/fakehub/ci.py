"""Simulated CI: GitHub Actions workflows (and a commit-status CI) run on pushed commits.

A repository's workflows (by default one, ``CI``, with one job ``ci`` running the
repository's CI command) each get their own check suite at push, owned by the
``github-actions`` App; a job's check run is created when it is queued (jobs that
``needs`` others only once those completed), several workflows may have jobs of the same
name, a workflow may start ``after`` another one completed (a late suite), and a failed
job can be re-run (a new check run in the same suite). A ``status`` workflow reports commit
statuses instead, like an external CI. Job logs look like Actions logs (timestamps, step
groups, ANSI colours, ``##[error]``) and are served through a redirect, as GitHub does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import sys
import tempfile
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from agentz_app.errors import AgentTimeout
from agentz_app.fakehub.gitrepos import export_commit
from agentz_app.procs import run_process

DEFAULT_CI_COMMAND = f"{shlex.quote(sys.executable)} -m pytest -q -p no:cacheprovider"
SUMMARY_LIMIT = 65535
ACTIONS_SLUG = "github-actions"
ACTIONS_APP_ID = 15368
LOG_LIMIT = 512 * 1024
Record = dict[str, Any]


@dataclass(frozen=True)
class Job:
    """A workflow job: a command (None: the repository's CI command), started once ``needs`` succeeded."""

    name: str
    command: str | None = None
    needs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Workflow:
    """A workflow run on every push; ``after`` another workflow's completion (a late suite) when set."""

    name: str
    jobs: tuple[Job, ...] = (Job("ci"),)
    app: str = ACTIONS_SLUG
    reports: Literal["checks", "status"] = "checks"
    after: str | None = None
    delay: float = 0.0


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
    run_id: int  # the check run's id (a job's id); a status job's own id
    job: str = "ci"
    workflow: str = "CI"
    reports: str = "checks"


@dataclass(frozen=True)
class CiOutcome:
    """How a CI run ended."""

    conclusion: str
    exit_code: int
    tail: str
    output: str = ""  # the command's whole output (its last LOG_LIMIT characters)


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
        return CiOutcome("success" if result.exit_code == 0 else "failure", result.exit_code, tail_text(output),
                         output=output[-LOG_LIMIT:])


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
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def pending(self) -> int:
        """Jobs queued or running."""
        return len(self._tasks)

    def submit(self, job: CiJob) -> None:
        """Schedule a job."""
        self.track(self._run(job), name=f"fakehub-ci-{job.sha[:8]}")

    def track(self, work: Coroutine[Any, Any, None], *, name: str) -> None:
        """Run ``work`` as CI work: counted as pending, cancelled by :meth:`stop`."""
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        self._idle.clear()
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not self._tasks:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Wait until no job is queued or running (bound the wait with ``asyncio.timeout``)."""
        await self._idle.wait()

    async def _run(self, job: CiJob) -> None:
        async with self._limit:
            await self.on_start(job)
            try:
                outcome = await run_ci(job, timeout=self.timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a detached CI task: any failure is reported as a failed check
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


def _stamp(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


def job_log(job: CiJob, outcome: CiOutcome, *, started: float) -> str:
    """A GitHub Actions-like log of one job: setup, checkout, the run step, cleanup."""
    lines = [
        "##[group]Runner Image", "Image: ubuntu-24.04", "##[endgroup]",
        "##[group]Run actions/checkout@v4", "with:", f"  repository: {job.full_name}", "##[endgroup]",
        f"Syncing repository: {job.full_name}", f"HEAD is now at {job.sha[:7]}",
        f"##[group]Run {job.command.splitlines()[0] if job.command else ''}",
        f"\x1b[36;1m{job.command}\x1b[0m", "shell: /usr/bin/bash -e {0}", "##[endgroup]",
        *outcome.output.rstrip("\n").splitlines(),
    ]
    if outcome.conclusion == "timed_out":
        lines.append("##[error]The job running on runner fakehub has exceeded the maximum execution time.")
    elif outcome.conclusion != "success":
        lines.append(f"##[error]Process completed with exit code {outcome.exit_code}.")
    lines += ["Post job cleanup.", "Cleaning up orphan processes"]
    return "\n".join(f"{_stamp(started)} {line}" for line in lines) + "\n"


def workflow_record(workflow: Workflow) -> Record:
    """A workflow as JSON-able state."""
    return {"name": workflow.name, "app": workflow.app, "reports": workflow.reports, "after": workflow.after,
            "delay": workflow.delay,
            "jobs": [{"name": j.name, "command": j.command, "needs": list(j.needs)} for j in workflow.jobs]}


def workflow_of(item: Record) -> Workflow:
    """A workflow from its JSON-able state."""
    jobs = tuple(Job(j["name"], j.get("command"), tuple(j.get("needs") or ())) for j in item.get("jobs") or [])
    return Workflow(item["name"], jobs or (Job("ci"),), item.get("app") or ACTIONS_SLUG,
                    "status" if item.get("reports") == "status" else "checks", item.get("after"),
                    float(item.get("delay") or 0.0))
