"""Planner and worker loops: claim a run, execute its stages, repeat.

One run at a time per process (parallelism is the number of worker processes).
While idle a loop polls the database about twice a second with a cheap read and
makes no GitHub request, except to finish a waiting run that no webhook will wake
(its CI finished before anyone waited, or it got no CI result within
``CI_GRACE_SECONDS``). Alongside its stage work, every worker acts on the runs webhooks
woke (:mod:`workers.wakeups`: CI results, closed pull requests, review feedback, re-runs),
so a busy worker does not delay them. SIGTERM/SIGINT hand the current run back (its
agent's process group is killed and the run resumes from its recorded stage elsewhere).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import structlog
from gidgethub.abc import GitHubAPI
from sqlalchemy import select

from agentz_app.config import SANDBOX_WARNING, Settings
from agentz_app.domain import states
from agentz_app.domain.states import Status
from agentz_app.errors import AgentZError, GitHubError
from agentz_app.github.app import GitHubApp
from agentz_app.logs import get_logger
from agentz_app.secrets import configured_secret_values
from agentz_app.store.db import Database
from agentz_app.store.models import Repository, Run, now
from agentz_app.store.owners import current_owner
from agentz_app.store.runs import RunQueue
from workers.ci_github import refresh_ci
from workers.pipeline import PipelineDeps, Progress, finish_run, plan_run, settle_ci, settle_waiting, work_run
from workers.reporter import Reporter, report_forever
from workers.sandbox import Sandbox
from workers.wakeups import act_on_wakeups, wake_forever
from workers.worktrees import Worktrees

IDLE_POLL_SECONDS = 0.5
GC_INTERVAL_SECONDS = 600.0  # how often an idle worker removes worktrees of finished runs
SETTLE_INTERVAL_SECONDS = 30.0  # how often an idle worker settles waiting runs that no webhook will wake
CI_POLL_SECONDS = 5.0

log = get_logger("agentz.pool")


@dataclass(frozen=True)
class Outcome:
    """What one claim-and-execute step did."""

    run_id: str
    before: str
    after: str

    def summary(self) -> str:
        return f"run {self.run_id}: {self.before} -> {self.after}"


# Wiring -------------------------------------------------------------------------


def _installation_of(db: Database, run_repo: str) -> int | None:
    with db.read() as session:
        row = session.scalars(select(Repository).where(Repository.full_name == run_repo)).first()
        return row.installation_id if row is not None else None


def build_deps(settings: Settings, db: Database, app: GitHubApp, *, progress: Progress | None = None,
               clock: Callable[[], float] = now) -> PipelineDeps:
    """Pipeline dependencies backed by the process's one GitHub App and the configured runners.

    GitHub calls use the run's installation client; git gets the installation's token from the App.
    """

    async def installation(repo: str, known: int | None = None) -> int:
        found = known or await db.run(_installation_of, db, repo)
        return found if found else await app.installation_for_repo(repo)

    async def github(run: Run) -> Any:
        return app.client(await installation(run.repo, run.installation_id))

    async def token(repo: str) -> str | None:
        return await app.installation_token(await installation(repo))

    queue = RunQueue(db, lease_seconds=settings.lease_seconds, clock=clock,
                     secret_values=configured_secret_values(settings))
    return PipelineDeps(settings=settings, db=db, queue=queue, github=github,
                        worktrees=Worktrees(settings, token_provider=token), progress=progress)


# Claims -------------------------------------------------------------------------


def _claimable(db: Database, statuses: Collection[str]) -> bool:
    """A cheap read: is anything unleased in ``statuses``?"""
    with db.read() as session:
        found = session.scalars(
            select(Run.id).where(Run.status.in_(list(statuses)), Run.lease_owner.is_(None)).limit(1)
        ).first()
        return found is not None


async def step(deps: PipelineDeps, role: str, owner: str, *, run_id: str | None = None) -> Outcome | None:
    """Claim one run for ``role`` (planner or worker) and execute its stages; None when idle."""
    if role == "planner":
        statuses, target, execute = states.CLAIMABLE_BY_PLANNER, Status.PLANNING, plan_run
    elif role == "worker":
        statuses, target, execute = states.CLAIMABLE_BY_WORKER, None, work_run
    else:
        raise ValueError(f"unknown role {role!r}")
    limit = deps.settings.per_repo_limit if role == "worker" and run_id is None else None
    claimed = await deps.db.run(deps.queue.leases.claim, owner, statuses=statuses, target=target, per_repo_limit=limit,
                                run_id=run_id)
    if claimed is None:
        return None
    run, lease = claimed
    before = str(run.status)
    # Every log line of this stage, from any module, carries the run id.
    with structlog.contextvars.bound_contextvars(run_id=run.id):
        log.info("claimed run", role=role, status=before, repo=run.repo, issue=run.issue_number)
        after = await execute(deps, run, lease)
    return Outcome(run.id, before, str(after.status))


# Loops --------------------------------------------------------------------------


def _install_stop(stop: asyncio.Event) -> Callable[[], None]:
    loop = asyncio.get_running_loop()
    installed = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)

    def remove() -> None:
        for sig in installed:
            loop.remove_signal_handler(sig)

    return remove


async def run_role(settings: Settings, role: str, *, deps: PipelineDeps, once: bool = False,
                   db: Database | None = None, stop: asyncio.Event | None = None) -> list[Outcome]:
    """Loop claim → execute for ``role`` until stopped; with ``once``, at most one claim.

    ``deps`` come from the composition root; ``db`` defaults to theirs and is not closed here.
    """
    database = db or deps.db
    stop = stop or asyncio.Event()
    remove = _install_stop(stop)
    owner = current_owner(role, host=settings.host_id)
    if settings.agent_sandbox == "none":
        log.warning(SANDBOX_WARNING, role=role)
    Sandbox(settings).check()  # no bubblewrap: stop now with the fix, not at the first agent call
    statuses = states.CLAIMABLE_BY_PLANNER if role == "planner" else states.CLAIMABLE_BY_WORKER
    background: list[asyncio.Future[None]] = []
    try:
        if not once:
            # Alongside the work: show every run's state on GitHub, this process's runs included.
            background.append(asyncio.ensure_future(report_forever(Reporter.from_deps(deps), stop)))
            if role == "worker":
                background.append(asyncio.ensure_future(wake_forever(deps, owner, stop)))
        chores = _Chores.for_role(deps, settings, enabled=role == "worker" and not once)
        outcomes = await _work(deps, database, role, owner, statuses, stop, chores, once=once)
        if background:
            stop.set()
        for task in background:
            await task
    finally:
        for task in background:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        remove()
    return outcomes


async def _work(deps: PipelineDeps, database: Database, role: str, owner: str, statuses: frozenset[str],
                stop: asyncio.Event, chores: _Chores, *, once: bool) -> list[Outcome]:
    """Claim and execute stages until ``stop`` (with ``once``, at most one); idle, do the chores."""
    outcomes: list[Outcome] = []
    while not stop.is_set():
        if not await database.run(_claimable, database, statuses):
            if once:
                break
            await chores.run()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), IDLE_POLL_SECONDS)
            continue
        try:
            stopped, outcome = await _step_unless_stopped(deps, role, owner, stop)
        except AgentZError as exc:
            log.error("stage failed", role=role, error=str(exc))
            if once:
                raise
            await asyncio.sleep(IDLE_POLL_SECONDS)
            continue
        if stopped:
            break
        if outcome is not None:
            outcomes.append(outcome)
            log.info("stage finished", role=role, run_id=outcome.run_id, status=outcome.after)
        if once:
            break
    return outcomes


async def _step_unless_stopped(deps: PipelineDeps, role: str, owner: str,
                               stop: asyncio.Event) -> tuple[bool, Outcome | None]:
    """One claim and stage, unless ``stop`` comes first: ``(stopped, outcome)``; a stopped stage hands its run back."""
    work = asyncio.ensure_future(step(deps, role, owner))
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({work, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if not work.done():
        work.cancel()  # hand the run back; the pipeline releases it for resumption
        with contextlib.suppress(asyncio.CancelledError):
            await work
        return True, None
    return False, work.result()


@dataclass
class _Chores:
    """A worker's idle chores, each at its interval: collect stale worktrees, settle runs waiting on CI."""

    deps: PipelineDeps
    settings: Settings
    next_gc: float
    next_settle: float

    @classmethod
    def for_role(cls, deps: PipelineDeps, settings: Settings, *, enabled: bool) -> _Chores:
        start = 0.0 if enabled else float("inf")
        return cls(deps, settings, start, start)

    async def run(self) -> None:
        if time.monotonic() >= self.next_gc:
            self.next_gc = time.monotonic() + GC_INTERVAL_SECONDS
            await _collect_worktrees(self.deps)
        if time.monotonic() >= self.next_settle:
            self.next_settle = time.monotonic() + settle_interval(self.settings)
            await settle_waiting(self.deps)


def settle_interval(settings: Settings) -> float:
    """How often an idle worker settles waiting runs: often enough to end a CI quiet window soon."""
    return min(SETTLE_INTERVAL_SECONDS, max(0.25, settings.ci_quiet_seconds / 4))


async def _collect_worktrees(deps: PipelineDeps) -> None:
    """Remove this host's worktrees and branches of finished runs (a crash can leave them)."""
    try:
        await deps.worktrees.gc(deps.db)
    except (AgentZError, OSError) as exc:
        log.warning("worktree collection failed", error=str(exc))


async def run_worker(settings: Settings, *, deps: PipelineDeps, once: bool = False, **kwargs: Any) -> list[Outcome]:
    """The worker role: develop, review, submit and CI-fix runs."""
    return await run_role(settings, "worker", deps=deps, once=once, **kwargs)


async def run_planner(settings: Settings, *, deps: PipelineDeps, once: bool = False, **kwargs: Any) -> list[Outcome]:
    """The planner role: turn queued runs into plans."""
    return await run_role(settings, "planner", deps=deps, once=once, **kwargs)


# One issue in the foreground --------------------------------------------------------


async def poll_ci(deps: PipelineDeps, gh: GitHubAPI, run: Run) -> Run:
    """Read the head SHA's check suites, check runs and statuses from GitHub (every page), store them,
    settle the run."""
    if not run.head_sha:
        return run
    await refresh_ci(gh, deps.db, run.repo, run.head_sha, own_slug=deps.settings.github_app_slug)
    if run.pr_number:
        pull = await gh.getitem(f"/repos/{run.repo}/pulls/{run.pr_number}")
        if pull.get("state") == "closed":
            target = Status.MERGED if pull.get("merged") else Status.CANCELLED
            run = await deps.db.run(deps.queue.moves.set_status, run.id, target, reason="pull request closed",
                                    actor="cli")
            await finish_run(deps, gh, run)
            return run
    return await settle_ci(deps, gh, run)


async def deliver_issue(settings: Settings, repo: str, number: int, *, echo: Callable[[str], None],
                        deps: PipelineDeps, db: Database | None = None,
                        ci_poll_seconds: float = CI_POLL_SECONDS) -> Run:
    """Enqueue one issue and drive it through plan → … → done in the foreground.

    ``deps`` come from the composition root (their progress echoes stage changes); ``db``
    defaults to theirs and is not closed here.
    """
    database = db or deps.db
    owner = current_owner("issue", host=settings.host_id)
    installation_id = await database.run(_installation_of, database, repo)
    run, created = await database.run(
        deps.queue.intake.enqueue, repo, number, installation_id=installation_id, force=True, requested_by="cli",
        reason="delivered from the command line",
    )
    echo(f"run {run.id} for {repo}#{number} {'created' if created else 'already ' + str(run.status)}")
    done = asyncio.Event()
    reporting = asyncio.ensure_future(report_forever(Reporter.from_deps(deps), done))
    try:
        return await _drive(deps, run, owner, echo=echo, ci_poll_seconds=ci_poll_seconds)
    finally:
        done.set()
        await reporting


async def _drive(active: PipelineDeps, run: Run, owner: str, *, echo: Callable[[str], None],
                 ci_poll_seconds: float) -> Run:
    """Step one run through its stages in this process until it ends or waits for a person."""
    last = ""
    while True:
        run = await active.db.run(active.queue.reads.get, run.id)
        if str(run.status) != last:
            last = str(run.status)
            echo(f"{run.id}: {last}" + (f" ({run.error})" if run.error else ""))
        if run.status in states.TERMINAL or run.status == Status.AWAITING_APPROVAL:
            return run
        if run.status in states.CLAIMABLE_BY_PLANNER:
            await step(active, "planner", owner, run_id=run.id)
        elif run.status in states.CLAIMABLE_BY_WORKER and run.lease_owner is None:
            await step(active, "worker", owner, run_id=run.id)
        elif run.status == Status.WAITING_CHECKS:
            try:
                await act_on_wakeups(active, owner)  # feedback or a close a receiver recorded
                await poll_ci(active, await active.github(run), run)
            except GitHubError as exc:
                echo(f"  could not read checks: {exc}")
            if (await active.db.run(active.queue.reads.get, run.id)).status == Status.WAITING_CHECKS:
                await asyncio.sleep(ci_poll_seconds)
        else:
            await asyncio.sleep(IDLE_POLL_SECONDS)  # deferred, or leased by another process
