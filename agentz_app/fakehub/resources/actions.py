"""GitHub Actions (and a status-reporting CI): workflow runs, their jobs' check runs, logs and re-runs.

See :mod:`agentz_app.fakehub.ci` for how jobs run.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from agentz_app.fakehub.ci import (
    ACTIONS_APP_ID,
    ACTIONS_SLUG,
    CiJob,
    CiOutcome,
    CiRunner,
    Job,
    Workflow,
    job_log,
    summary_for,
    workflow_of,
)
from agentz_app.fakehub.core import HubCore
from agentz_app.fakehub.resources.checks import Checks
from agentz_app.fakehub.resources.statuses import Statuses
from agentz_app.fakehub.state import Record


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

    def __init__(self, core: HubCore, checks: Checks, statuses: Statuses, *, concurrency: int = 1,
                 timeout: float = 300.0) -> None:
        self.core = core
        self.checks = checks
        self.statuses = statuses
        self.ci = CiRunner(on_start=self.job_started, on_finish=self.job_finished, concurrency=concurrency,
                           timeout=timeout)
        """Runs the jobs' commands."""
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
            return [workflow_of(item) for item in configured]
        return [Workflow("CI")] if repo.get("ci_command") else []

    # pushes --------------------------------------------------------------------------

    def on_push(self, repo: Record, branch: str, sha: str, before: str) -> None:
        """Start every workflow that runs on push (each its own suite, created now)."""
        for workflow in self.workflows(repo):
            if workflow.after is None:
                self._start(workflow, repo, branch, sha, before)

    def _start(self, workflow: Workflow, repo: Record, branch: str, sha: str, before: str) -> None:
        if workflow.delay > 0:
            self.ci.track(self._start_later(workflow, repo, branch, sha, before), name=f"fakehub-wf-{sha[:8]}")
            return
        suite_id = 0
        if workflow.reports == "checks":
            suite = self.checks.new_suite(repo["full_name"], sha, app_slug=workflow.app, branch=branch, before=before)
            suite_id = int(suite["id"])
        else:
            suite_id = -self.core.state.new_id()  # a status CI has no suite
        run = _WorkflowRun(workflow, repo["full_name"], branch, sha, before, suite_id)
        self._runs[suite_id] = run
        self._queue_ready(run)
        self.core.changed()

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
        repo = self.core.state.repo(run.full_name)
        command = job.command or repo.get("ci_command") or "true"
        if run.workflow.reports == "checks":
            job_id = self._create_run(run, job, status="queued", conclusion=None)
        else:
            job_id = self.core.state.new_id()
        run.runs[job.name] = job_id
        self.ci.submit(CiJob(full_name=run.full_name, repo_path=self.core.repo_git(run.full_name),
                                 branch=run.branch, sha=run.sha, before=run.before, command=command,
                                 suite_id=run.suite_id, run_id=job_id, job=job.name, workflow=run.workflow.name,
                                 reports=run.workflow.reports))

    def _create_run(self, run: _WorkflowRun, job: Job, *, status: str, conclusion: str | None) -> int:
        now = self.core.state.now()
        actor = f"{run.workflow.app}[bot]"
        rec: Record = {"id": self.core.state.new_id(), "repo": run.full_name, "head_sha": run.sha,
                       "check_suite_id": run.suite_id, "app_slug": run.workflow.app, "app_id": ACTIONS_APP_ID,
                       "name": job.name, "status": status, "conclusion": conclusion,
                       "started_at": now,
                       "completed_at": now if status == "completed" else None, "external_id": "",
                       "details_url": None, "output": {"title": None, "summary": None, "text": None},
                       "annotations": [], "actions": [], "created_at": now, "updated_at": now}
        self.core.state.data["check_runs"][str(rec["id"])] = rec
        self.core.state.by_id("check_suites", run.suite_id)["updated_at"] = now
        self.checks.emit_run(rec, "created", actor)
        if status == "completed":
            self.checks.emit_run(rec, "completed", actor)
        return int(rec["id"])

    # job hooks (CiRunner) -------------------------------------------------------------

    async def job_started(self, job: CiJob) -> None:
        """A job left the queue: its check run is in progress, a status CI reports pending."""
        self._starts[job.run_id] = time.time()
        if job.reports == "status":
            self.statuses.create(job.full_name, job.sha, {"state": "pending", "context": _context(job),
                                                            "description": "Running"}, actor="external-ci[bot]")
            return
        rec = self.core.state.by_id("check_runs", job.run_id)
        rec.update({"status": "in_progress", "started_at": self.core.state.now()})
        rec["output"] = {"title": "Running", "summary": f"Running `{job.command}`", "text": None}
        self.core.changed()

    async def job_finished(self, job: CiJob, outcome: CiOutcome) -> None:
        """A job ended: report it, queue what needed it, complete the suite when nothing is left."""
        self.logs[job.run_id] = job_log(job, outcome, started=self._starts.pop(job.run_id, time.time()))
        run = self._runs.get(job.suite_id)
        if job.reports == "status":
            state = "success" if outcome.conclusion == "success" else "failure"
            self.statuses.create(job.full_name, job.sha, {"state": state, "context": _context(job),
                                                            "description": f"exited with {outcome.exit_code}"},
                                   actor="external-ci[bot]")
        else:
            rec = self.core.state.by_id("check_runs", job.run_id)
            now = self.core.state.now()
            title = "CI passed" if outcome.conclusion == "success" else f"CI {outcome.conclusion}"
            rec.update({"status": "completed", "conclusion": outcome.conclusion, "completed_at": now,
                        "updated_at": now,
                        "output": {"title": title, "summary": summary_for(outcome, job.command), "text": None}})
            self.checks.emit_run(rec, "completed", f"{rec['app_slug']}[bot]")
        if run is not None and run.runs.get(job.job) == job.run_id:
            run.results[job.job] = outcome.conclusion
            self._queue_ready(run)
        elif run is None and job.reports == "checks":
            self.checks.suite_maybe_completed(job.suite_id, f"{ACTIONS_SLUG}[bot]")
        self.core.changed()

    def _workflow_done(self, run: _WorkflowRun) -> None:
        if run.workflow.reports == "checks":
            self.checks.suite_maybe_completed(run.suite_id, f"{run.workflow.app}[bot]")
        if run.completed_once:
            return  # a re-run does not start the workflows that follow again
        run.completed_once = True
        repo = self.core.state.repo(run.full_name)
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
        suite = self.core.state.by_id("check_suites", suite_id)
        suite["updated_at"] = self.core.state.now()
        self.checks.emit_suite(suite, "rerequested", user or self.core.default_user)
        for job in failed:
            self._queue_job(run, job)
        self.core.changed()
        return [run.runs[job.name] for job in failed]

    def suite_of(self, full_name: str, sha: str, workflow: str) -> int:
        """The suite id of ``workflow`` on ``sha``."""
        for suite_id, run in self._runs.items():
            if run.full_name == full_name and run.sha == sha and run.workflow.name == workflow:
                return suite_id
        raise LookupError(f"workflow {workflow!r} has not run on {sha}")


def _context(job: CiJob) -> str:
    return f"{job.workflow}/{job.job}"
