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
import hashlib
import hmac
import os
import secrets
import shlex
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from agentz_app.errors import AgentTimeout
from agentz_app.fakehub.gitrepos import export_commit
from agentz_app.procs import run_process

if TYPE_CHECKING:
    from agentz_app.fakehub.hub import FakeHub

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


@dataclass
class _WorkflowRun:
    """A workflow running on one commit: its suite and its jobs' latest check runs."""

    workflow: Workflow
    full_name: str
    branch: str
    sha: str
    before: str
    suite_id: int
    runs: dict[str, int] = field(default_factory=dict)  # job name -> latest check run (or status job) id
    results: dict[str, str] = field(default_factory=dict)  # job name -> conclusion
    completed_once: bool = False


class ActionsSimulator:
    """GitHub Actions (and a status-reporting CI) for a FakeHub's repositories."""

    def __init__(self, hub: FakeHub) -> None:
        self.hub = hub
        self.logs: dict[int, str] = {}  # job (check run) id -> log text
        self.blob_requests: list[dict[str, str]] = []  # headers of every log download, for tests
        self._runs: dict[int, _WorkflowRun] = {}  # suite id -> workflow run
        self._starts: dict[int, float] = {}
        self._blob_key = secrets.token_bytes(16)

    # job logs, served like GitHub: the API redirects to a signed URL on another host -------

    def log_location(self, base_url: str, job_id: int) -> str | None:
        """Where the API redirects a request for job ``job_id``'s log (None: no such log)."""
        if job_id not in self.logs:
            return None
        url = urlsplit(base_url)
        other = "localhost" if url.hostname != "localhost" else "127.0.0.1"
        signature = hmac.new(self._blob_key, str(job_id).encode(), hashlib.sha256).hexdigest()
        return f"{url.scheme}://{other}:{url.port}/_fakehub/blobs/job-logs/{job_id}?sig={signature}"

    def signed_log(self, job_id: int, signature: str) -> str | None:
        """The log behind a signed URL (None when the signature is wrong)."""
        expected = hmac.new(self._blob_key, str(job_id).encode(), hashlib.sha256).hexdigest()
        return self.logs.get(job_id) if hmac.compare_digest(expected, signature) else None

    # configuration -------------------------------------------------------------------

    def workflows(self, repo: Record) -> list[Workflow]:
        """The repository's workflows: configured ones, else one ``CI`` job running its CI command."""
        configured = repo.get("workflows")
        if configured is not None:
            return [_workflow_of(item) for item in configured]
        return [Workflow("CI")] if repo.get("ci_command") else []

    # pushes --------------------------------------------------------------------------

    def on_push(self, repo: Record, branch: str, sha: str, before: str) -> None:
        """Start every workflow that runs on push (each its own suite, created now)."""
        for workflow in self.workflows(repo):
            if workflow.after is None:
                self._start(workflow, repo, branch, sha, before)

    def _start(self, workflow: Workflow, repo: Record, branch: str, sha: str, before: str) -> None:
        if workflow.delay > 0:
            self.hub.ci.track(self._start_later(workflow, repo, branch, sha, before), name=f"fakehub-wf-{sha[:8]}")
            return
        suite_id = 0
        if workflow.reports == "checks":
            suite = self.hub.new_suite(repo["full_name"], sha, app_slug=workflow.app, branch=branch, before=before)
            suite_id = int(suite["id"])
        else:
            suite_id = -self.hub.state.new_id()  # a status CI has no suite
        run = _WorkflowRun(workflow, repo["full_name"], branch, sha, before, suite_id)
        self._runs[suite_id] = run
        self._queue_ready(run)
        self.hub.changed()

    async def _start_later(self, workflow: Workflow, repo: Record, branch: str, sha: str, before: str) -> None:
        await asyncio.sleep(workflow.delay)
        self._start(Workflow(workflow.name, workflow.jobs, workflow.app, workflow.reports, workflow.after),
                    repo, branch, sha, before)

    def _queue_ready(self, run: _WorkflowRun) -> None:
        """Create and queue the jobs whose needs completed; skip those whose needs failed."""
        for job in run.workflow.jobs:
            if job.name in run.runs or not all(need in run.results for need in job.needs):
                continue
            if any(run.results[need] != "success" for need in job.needs):
                run.runs[job.name] = self._create_run(run, job, status="completed", conclusion="skipped")
                run.results[job.name] = "skipped"
                continue
            self._queue_job(run, job)
        if len(run.results) == len(run.workflow.jobs):
            self._workflow_done(run)

    def _queue_job(self, run: _WorkflowRun, job: Job) -> None:
        repo = self.hub.state.repo(run.full_name)
        command = job.command or repo.get("ci_command") or "true"
        if run.workflow.reports == "checks":
            job_id = self._create_run(run, job, status="queued", conclusion=None)
        else:
            job_id = self.hub.state.new_id()
        run.runs[job.name] = job_id
        self.hub.ci.submit(CiJob(full_name=run.full_name, repo_path=self.hub.repo_git(run.full_name),
                                 branch=run.branch, sha=run.sha, before=run.before, command=command,
                                 suite_id=run.suite_id, run_id=job_id, job=job.name, workflow=run.workflow.name,
                                 reports=run.workflow.reports))

    def _create_run(self, run: _WorkflowRun, job: Job, *, status: str, conclusion: str | None) -> int:
        now = self.hub.state.now()
        actor = f"{run.workflow.app}[bot]"
        rec: Record = {"id": self.hub.state.new_id(), "repo": run.full_name, "head_sha": run.sha,
                       "check_suite_id": run.suite_id, "app_slug": run.workflow.app, "app_id": ACTIONS_APP_ID,
                       "name": job.name, "status": status, "conclusion": conclusion,
                       "started_at": now,
                       "completed_at": now if status == "completed" else None, "external_id": "",
                       "details_url": None, "output": {"title": None, "summary": None, "text": None},
                       "annotations": [], "actions": [], "created_at": now, "updated_at": now}
        self.hub.state.data["check_runs"][str(rec["id"])] = rec
        self.hub.state.by_id("check_suites", run.suite_id)["updated_at"] = now
        self.hub.emit_check_run(rec, "created", actor)
        if status == "completed":
            self.hub.emit_check_run(rec, "completed", actor)
        return int(rec["id"])

    # job hooks (CiRunner) -------------------------------------------------------------

    async def job_started(self, job: CiJob) -> None:
        """A job left the queue: its check run is in progress, a status CI reports pending."""
        self._starts[job.run_id] = time.time()
        if job.reports == "status":
            self.hub.create_status(job.full_name, job.sha, {"state": "pending", "context": _context(job),
                                                            "description": "Running"}, actor="external-ci[bot]")
            return
        rec = self.hub.state.by_id("check_runs", job.run_id)
        rec.update({"status": "in_progress", "started_at": self.hub.state.now()})
        rec["output"] = {"title": "Running", "summary": f"Running `{job.command}`", "text": None}
        self.hub.changed()

    async def job_finished(self, job: CiJob, outcome: CiOutcome) -> None:
        """A job ended: report it, queue what needed it, complete the suite when nothing is left."""
        self.logs[job.run_id] = job_log(job, outcome, started=self._starts.pop(job.run_id, time.time()))
        run = self._runs.get(job.suite_id)
        if job.reports == "status":
            state = "success" if outcome.conclusion == "success" else "failure"
            self.hub.create_status(job.full_name, job.sha, {"state": state, "context": _context(job),
                                                            "description": f"exited with {outcome.exit_code}"},
                                   actor="external-ci[bot]")
        else:
            rec = self.hub.state.by_id("check_runs", job.run_id)
            now = self.hub.state.now()
            title = "CI passed" if outcome.conclusion == "success" else f"CI {outcome.conclusion}"
            rec.update({"status": "completed", "conclusion": outcome.conclusion, "completed_at": now,
                        "updated_at": now,
                        "output": {"title": title, "summary": summary_for(outcome, job.command), "text": None}})
            self.hub.emit_check_run(rec, "completed", f"{rec['app_slug']}[bot]")
        if run is not None and run.runs.get(job.job) == job.run_id:
            run.results[job.job] = outcome.conclusion
            self._queue_ready(run)
        elif run is None and job.reports == "checks":
            self.hub.suite_maybe_completed(job.suite_id, f"{ACTIONS_SLUG}[bot]")
        self.hub.changed()

    def _workflow_done(self, run: _WorkflowRun) -> None:
        if run.workflow.reports == "checks":
            self.hub.suite_maybe_completed(run.suite_id, f"{run.workflow.app}[bot]")
        if run.completed_once:
            return  # a re-run does not start the workflows that follow again
        run.completed_once = True
        repo = self.hub.state.repo(run.full_name)
        for later in self.workflows(repo):
            if later.after == run.workflow.name:
                self._start(later, repo, run.branch, run.sha, run.before)

    # re-runs ---------------------------------------------------------------------------

    def rerun_failed_jobs(self, full_name: str, suite_id: int, *, user: str | None = None) -> list[int]:
        """GitHub's "Re-run failed jobs": new check runs (new ids) for the suite's failed jobs, the suite reopened."""
        run = self._runs.get(suite_id)
        if run is None or run.full_name.lower() != full_name.lower():
            raise LookupError(f"no workflow run for suite {suite_id}")
        failed = [job for job in run.workflow.jobs if run.results.get(job.name) not in (None, "success", "skipped")]
        for job in failed:
            del run.results[job.name]
            del run.runs[job.name]
        suite = self.hub.state.by_id("check_suites", suite_id)
        suite["updated_at"] = self.hub.state.now()
        self.hub.emit_suite(suite, "rerequested", user or self.hub.default_user)
        for job in failed:
            self._queue_job(run, job)
        self.hub.changed()
        return [run.runs[job.name] for job in failed]

    def suite_of(self, full_name: str, sha: str, workflow: str) -> int:
        """The suite id of ``workflow`` on ``sha``."""
        for suite_id, run in self._runs.items():
            if run.full_name == full_name and run.sha == sha and run.workflow.name == workflow:
                return suite_id
        raise LookupError(f"workflow {workflow!r} has not run on {sha}")


def _context(job: CiJob) -> str:
    return f"{job.workflow}/{job.job}"


def workflow_record(workflow: Workflow) -> Record:
    """A workflow as JSON-able state."""
    return {"name": workflow.name, "app": workflow.app, "reports": workflow.reports, "after": workflow.after,
            "delay": workflow.delay,
            "jobs": [{"name": j.name, "command": j.command, "needs": list(j.needs)} for j in workflow.jobs]}


def _workflow_of(item: Record) -> Workflow:
    jobs = tuple(Job(j["name"], j.get("command"), tuple(j.get("needs") or ())) for j in item.get("jobs") or [])
    return Workflow(item["name"], jobs or (Job("ci"),), item.get("app") or ACTIONS_SLUG,
                    "status" if item.get("reports") == "status" else "checks", item.get("after"),
                    float(item.get("delay") or 0.0))
