"""The run stage machine: plan, develop, review ⇄ fix, submit, wait for CI, fix CI.

A planner executes :func:`plan_run` on a run it claimed in ``queued`` (now
``planning``); a worker executes :func:`work_run` on a run it claimed in ``ready``
or ``fixing_ci``. While a stage runs, a heartbeat task renews the lease; when the
lease is lost the agent is cancelled (its process group is killed) and nothing
more is written. Every terminal path goes through :func:`finish_run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from gidgethub.abc import GitHubAPI
from sqlalchemy import select

from agentz_app.config import Settings
from agentz_app.domain import states
from agentz_app.domain.ci import CIPolicy, Verdict, decide_ci
from agentz_app.domain.plans import Finding, Impact, Plan, Review
from agentz_app.domain.runner import Runner, RunnerResult
from agentz_app.domain.states import Status
from agentz_app.errors import AgentZError, GitHubError, LeaseLost, RunnerError
from agentz_app.logs import get_logger
from agentz_app.repo_config import RepoConfig, StoredConfig, effective_settings, stored_config
from agentz_app.reporting.checks import (
    ci_fix_check,
    finding_annotations,
    plan_check,
    review_check,
)
from agentz_app.reporting.comments import commit_message, pr_body
from agentz_app.reporting.costs import call_costs, cost_markdown
from agentz_app.scheduling.recheck import recheck_before_development
from agentz_app.secrets import configured_secret_values
from agentz_app.store.ci import ci_signals, heads_changed_since, repo_has_ci
from agentz_app.store.db import Database
from agentz_app.store.models import IssueComment, IssueSnapshot, Repository, Run, now
from agentz_app.store.runs import Lease, LeaseClaims, RunQueue, RunReads, change_resources
from workers.ci_github import ci_failure_feedback, refresh_ci
from workers.content_policy import (
    Change,
    ContentPolicy,
    Violation,
    check_changes,
    violation_annotations,
    violations_markdown,
)
from workers.coordinator import LABEL_QUEUED, LABEL_RUNNING, CheckReport, Coordinator
from workers.gitops import GitError
from workers.repo_setup import failure_reason, load_repo_config, local_test_prompt, run_repo_command, run_setup
from workers.reporter import Reporter
from workers.reporter import run_notes as reporter_notes
from workers.roles.parse import run_structured
from workers.roles.prompts import (
    AuthoredText,
    IssueContext,
    develop_prompt,
    feedback_prompt,
    fix_review_prompt,
    handover_prompt,
    impact_prompt,
    plan_prompt,
    policy_fix_prompt,
    review_prompt,
    revise_prompt,
)
from workers.runners.logfile import run_log
from workers.runners.prices import configured_model, estimate_call_cost
from workers.runners.registry import agent_env, get_runner
from workers.worktrees import ForeignBranch, Snapshot, Worktrees, branch_name

T = TypeVar("T")
GitHubFactory = Callable[[Run], Awaitable[Any]]
Recheck = Callable[..., Awaitable[str | None]]
Progress = Callable[[Run, str], None]
# Shows the Task Lead's impact analysis to the operator; returns their answers ("" keeps the plan).
Consult = Callable[[Run, Impact], Awaitable[str]]

log = get_logger("agentz.pipeline")

_RESUMABLE_STAGES = ("developing", "reviewing", "fixing", "submitting")
_CI_STAGES = ("ci_fixing", "ci_submitting", "ci_rebasing", "fixing_ci")


class StopRun(AgentZError):
    """End the run in ``status`` (failed, needs_human, cancelled) with ``reason``."""

    def __init__(self, status: Status, reason: str, **event: Any) -> None:
        self.status = status
        self.reason = reason
        self.event = event
        super().__init__(f"{status}: {reason}")


@dataclass
class PipelineDeps:
    """What the stages need; built once per process by the pool."""

    settings: Settings
    db: Database
    queue: RunQueue
    github: GitHubFactory
    worktrees: Worktrees
    runner_for: Callable[[str], Runner] | None = None
    recheck: Recheck = recheck_before_development
    progress: Progress | None = None
    consult: Consult | None = None
    extra_agent_env: Mapping[str, str] = field(default_factory=dict)

    def runner(self, role: str, settings: Settings | None = None) -> Runner:
        """The runner for a role (task_lead/developer share the Task Lead backend); ``settings``: the run's."""
        if self.runner_for is not None:
            return self.runner_for(role)
        return get_runner((settings or self.settings).backend_for(role), self.settings)


# Reading the issue ------------------------------------------------------------


def _stored_issue(db: Database, run: Run) -> tuple[IssueSnapshot | None, list[AuthoredText], str | None]:
    """The issue's snapshot, its comments (not the App's) and the repository's default branch, as stored."""
    with db.read() as session:
        snap = session.scalars(
            select(IssueSnapshot).where(IssueSnapshot.repo == run.repo, IssueSnapshot.number == run.issue_number)
        ).first()
        repo_row = session.scalars(select(Repository).where(Repository.full_name == run.repo)).first()
        comments = [
            AuthoredText(c.body, author=c.author, association=c.author_association, kind=c.kind)
            for c in session.scalars(
                select(IssueComment)
                .where(IssueComment.repo == run.repo, IssueComment.issue_number == run.issue_number,
                       IssueComment.from_app.is_(False))
                .order_by(IssueComment.id)
            )
        ]
        return snap, comments, repo_row.default_branch if repo_row is not None else None


async def load_issue(deps: PipelineDeps, gh: GitHubAPI, run: Run) -> IssueContext:
    """The issue as the agents see it: snapshot first, GitHub when no snapshot is stored."""
    snap, comments, default_branch = await deps.db.run(_stored_issue, deps.db, run)
    title, body = (snap.title, snap.body) if snap is not None else ("", "")
    author, association = (snap.author, snap.author_association) if snap is not None else ("", None)
    if snap is None:
        data = await gh.getitem(f"/repos/{run.repo}/issues/{run.issue_number}")
        title, body = str(data.get("title") or ""), str(data.get("body") or "")
        author = str((data.get("user") or {}).get("login") or "")
        association = data.get("author_association") if isinstance(data.get("author_association"), str) else None
    if default_branch is None:
        data = await gh.getitem(f"/repos/{run.repo}")
        default_branch = str(data.get("default_branch") or "")
        if not default_branch:
            raise StopRun(Status.FAILED, f"cannot tell the default branch of {run.repo}")
    return IssueContext(repo=run.repo, number=run.issue_number, title=title or run.title, body=body,
                        comments=tuple(comments), default_branch=default_branch, author=author,
                        author_association=association)


# Heartbeats -------------------------------------------------------------------


async def with_heartbeat(db: Database, leases: LeaseClaims, lease: Lease, interval: float,
                         work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` while renewing the lease; on LeaseLost cancel ``work`` and raise it.

    A lease ``work`` gave back itself (a move to a status that holds none, or a release) is
    not lost: the renewals stop and ``work`` finishes what follows, such as reporting the move.
    """
    task: asyncio.Task[T] = asyncio.ensure_future(work)

    async def beat() -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await db.run(leases.heartbeat, lease)
            except LeaseLost:
                if await db.run(leases.given_back, lease):
                    return
                raise

    beater = asyncio.ensure_future(beat())
    try:
        done, _ = await asyncio.wait({task, beater}, return_when=asyncio.FIRST_COMPLETED)
        if beater in done and beater.exception() is None:  # given back: no more renewals
            await asyncio.wait({task})
    except asyncio.CancelledError:
        task.cancel()
        beater.cancel()
        with contextlib.suppress(BaseException):
            await task
        raise
    if beater in done and beater.exception() is not None:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        beater.result()  # raises LeaseLost (or the database error)
        raise LeaseLost(lease.run_id, lease.attempt)
    beater.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await beater
    return task.result()


# One attempt on one run --------------------------------------------------------


@dataclass(frozen=True)
class Handover:
    """What a fresh developer session is told besides its task (the issue and plan when the task lacks them)."""

    base: str
    issue: IssueContext | None = None
    plan: Plan | None = None
    findings: Sequence[Finding] = ()
    review_summary: str = ""


class Attempt:
    """A claimed run: fenced writes, cost guard and agent calls for one lease."""

    def __init__(self, deps: PipelineDeps, run: Run, lease: Lease, gh: GitHubAPI) -> None:
        self.deps = deps
        self.settings = deps.settings
        self.queue = deps.queue
        self.run = run
        self.lease = lease
        self.gh = gh
        self.db = deps.db
        self.coordinator = Coordinator(gh, deps.db, deps.settings, worktrees=deps.worktrees)
        # The dearest single call so far (this run, any attempt) estimates the next one (see :meth:`open`).
        self.max_single_cost = 0.0
        self.review: Review | None = None
        self.repo_config: RepoConfig | None = None

    @classmethod
    async def open(cls, deps: PipelineDeps, run: Run, lease: Lease, gh: Any) -> Attempt:
        """An attempt on a claimed run that knows the run's dearest agent call so far."""
        attempt = cls(deps, run, lease, gh)
        attempt.max_single_cost = await deps.db.run(_dearest_call, deps.queue.reads, run.id)
        return attempt

    async def move(self, target: Status, **kwargs: Any) -> Run:
        self.run = await self.db.run(self.queue.moves.transition, self.lease, target, **kwargs)
        if self.deps.progress is not None:
            self.deps.progress(self.run, str(target))
        log.info("run moved", run_id=self.run.id, status=str(target), stage=kwargs.get("stage"))
        return self.run

    async def update(self, **fields: Any) -> Run:
        self.run = await self.db.run(self.queue.moves.update, self.lease, **fields)
        return self.run

    # Cost guard ----------------------------------------------------------

    def guard_cost(self, role: str, prompt: str) -> None:
        """Stop before the next agent call could push the run over MAX_COST_PER_RUN_USD.

        The next call is estimated as the dearer of the run's dearest call so far and the
        prompt's size at the backend's price (:mod:`workers.runners.prices`), so the first
        call is guarded too.
        """
        limit = self.settings.max_cost_per_run_usd
        backend = self.settings.backend_for(role)
        model = configured_model(backend, self.settings.agent_variables())
        estimate = max(self.max_single_cost, estimate_call_cost(backend, model, len(prompt)))
        if self.run.cost_usd + estimate > limit:
            raise StopRun(
                Status.NEEDS_HUMAN,
                f"cost limit: ${self.run.cost_usd:.2f} spent, the next {role} call may cost ${estimate:.2f} "
                f"(MAX_COST_PER_RUN_USD is ${limit:.2f}); raise the limit and `/agent-z retry` to go on",
            )

    async def start_call(self, role: str, prompt: str) -> None:
        """Check the cost cap, then record that a ``role`` call starts (the dashboard times it)."""
        self.guard_cost(role, prompt)
        await self.db.run(self.queue.moves.add_leased_event, self.lease, "agent_started", role=role)

    async def account(self, result: RunnerResult, role: str) -> None:
        self.max_single_cost = max(self.max_single_cost, result.cost_usd)
        if result.cost_usd or result.tokens:
            self.run = await self.db.run(self.queue.moves.add_cost, self.lease, result.cost_usd, result.tokens)
        await self.db.run(self.queue.moves.add_event, self.run.id, "agent_call", role=role, cost_usd=result.cost_usd,
                          tokens=result.tokens, duration=round(result.duration, 3), exit_code=result.exit_code,
                          blocked=dict(result.network_blocked))

    # Agent calls ---------------------------------------------------------

    def _env(self) -> dict[str, str]:
        return agent_env(self.settings, self.deps.extra_agent_env)

    def _read_only(self) -> tuple[Path, ...]:
        """What an agent may read besides its working copy: the object store the copy borrows from."""
        return (self.deps.worktrees.objects_path(self.run.repo),)

    async def agent(self, role: str, prompt: str, workdir: Path, *, session_id: str | None) -> RunnerResult:
        """One free-form agent call (developer, fixer) with cost accounting.

        While it runs, the working copy is checkpointed every CHECKPOINT_SECONDS when it
        changed (see :meth:`checkpoint_progress`), so a crash loses at most that much work.
        """
        await self.start_call(role, prompt)
        with run_log(self.settings, self.run.id, role) as sink:
            call = self.deps.runner(role, self.settings).run(
                role, prompt, workdir, session_id=session_id, timeout=self.settings.agent_timeout_seconds,
                env=self._env(), log=sink, read_only=self._read_only(),
            )
            result = await self._checkpointing(workdir, call)
        await self.account(result, role)
        if not result.ok:
            detail = result.error or f"exit {result.exit_code}"
            if result.permission_denials:
                detail += "; denied: " + ", ".join(result.permission_denials[:5])
            raise StopRun(Status.FAILED, f"{role} agent failed: {detail}")
        return result

    async def _checkpointing(self, workdir: Path, call: Coroutine[Any, Any, T]) -> T:
        """Await ``call`` while a background task checkpoints ``workdir``; stop it cleanly when the call ends."""
        task: asyncio.Task[T] = asyncio.ensure_future(call)
        stop = asyncio.Event()
        saver = asyncio.ensure_future(self._checkpoint_every(workdir, stop))
        try:
            await asyncio.wait({task, saver}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done():  # the saver only ends early when the lease is lost
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
                saver.result()
                raise LeaseLost(self.lease.run_id, self.lease.attempt)
            stop.set()
            await saver  # lets a checkpoint in flight finish, so it never lands after the next one
        except BaseException:
            for pending in (task, saver):
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending
            raise
        return task.result()

    async def _checkpoint_every(self, workdir: Path, stop: asyncio.Event) -> None:
        last_tree: str | None = None
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that lands as the
            # interval ends, and the saver then outlives the cancelled call forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.checkpoint_seconds):
                    await stop.wait()
            if stop.is_set():
                return
            try:
                last_tree = await self.checkpoint_progress(workdir, last_tree)
            except LeaseLost:
                raise
            except Exception as exc:  # noqa: BLE001 - beside the agent call: a failed checkpoint is logged and the next interval tries again
                log.warning("checkpoint during the agent call failed", run_id=self.run.id, error=str(exc))

    async def checkpoint_progress(self, path: Path, last_tree: str | None) -> str | None:
        """Checkpoint the working copy in the middle of an agent call; returns the tree now checkpointed.

        Nothing happens when the tree equals ``last_tree`` (or the recorded checkpoint), and a
        tree the content policy refuses is skipped, never pushed. The push is made only while
        this attempt still holds the lease, and recorded with a fenced write.
        """
        worktrees = self.deps.worktrees
        snapshot = await worktrees.snapshot(self.run, path)
        recorded = self.run.checkpoint_sha or self.run.head_sha
        if last_tree is None and recorded:
            last_tree = await worktrees.tree_of(self.run.repo, recorded)
        if snapshot.tree == last_tree or (last_tree is None and not snapshot.changes):
            return last_tree
        refused = self.violations(snapshot)
        if refused:
            log.info("checkpoint skipped: the content policy refuses the tree", run_id=self.run.id,
                     paths=[v.path for v in refused[:10]])
            return last_tree
        await self.db.run(self.queue.leases.heartbeat, self.lease)  # fenced: a lost lease stops here, before any push
        sha = await worktrees.checkpoint(self.run.id, self.run.repo, snapshot)
        await self.update(checkpoint_sha=sha)  # also records the ``checkpoint`` event the reconciler weighs
        return snapshot.tree

    # Sessions --------------------------------------------------------------

    async def session_here(self, role: str) -> str | None:
        """The role's stored session when this host's agent home holds it; None means start a fresh one.

        A session recorded by another host (or by an unknown one) is never passed to the CLI here.
        """
        reviewer = role == "reviewer"
        session = self.run.reviewer_session_id if reviewer else self.run.session_id
        host = self.run.reviewer_session_host if reviewer else self.run.session_host
        if session and host != self.settings.host_id:
            await self.db.run(self.queue.moves.add_event, self.run.id, "session_elsewhere", role=role,
                              session_host=host, host=self.settings.host_id)
            return None
        return session

    async def keep_session(self, role: str, session: str | None) -> None:
        """Record the role's session and this host as the one holding it."""
        host = self.settings.host_id if session else None
        if role == "reviewer":
            await self.update(reviewer_session_id=session, reviewer_session_host=host)
        else:
            await self.update(session_id=session, session_host=host)

    async def developer(self, task: str, path: Path, *, context: Handover) -> RunnerResult:
        """A developer call: in the run's session when this host holds it, else in a fresh session
        whose prompt also carries the plan, the change so far and the open review findings."""
        session = await self.session_here("developer")
        prompt = task
        if session is None:
            if self.run.session_id:  # the session left behind no longer knows the latest work
                await self.keep_session("developer", None)
            diff = ""
            if self.run.checkpoint_sha:
                diff = await self.deps.worktrees.diff(self.run.repo, context.base, self.run.checkpoint_sha)
            prompt = handover_prompt(task, issue=context.issue, plan=context.plan, diff=diff,
                                     findings=context.findings, review_summary=context.review_summary)
        result = await self.agent("developer", prompt, path, session_id=session)
        await self.keep_session("developer", result.session_id or session)
        return result

    async def structured(
        self, model: type[Plan] | type[Review], role: str, prompt: str, workdir: Path, *, session_id: str | None
    ) -> tuple[Any, str, str | None, str | None]:
        """A structured call with one repair; returns (value, raw, error, session id)."""
        await self.start_call(role, prompt)
        accounted: list[RunnerResult] = []

        async def before_repair(first: RunnerResult) -> None:
            await self.account(first, role)
            accounted.append(first)
            await self.start_call(role, prompt)

        with run_log(self.settings, self.run.id, role) as sink:
            value, results, raw, error = await run_structured(
                self.deps.runner(role, self.settings), model, role=role, prompt=prompt, workdir=workdir,
                timeout=self.settings.agent_timeout_seconds, session_id=session_id, env=self._env(), log=sink,
                before_repair=before_repair, read_only=self._read_only(),
            )
        for result in results:
            if not any(result is seen for seen in accounted):
                await self.account(result, role)
        session = next((r.session_id for r in reversed(results) if r.session_id), session_id)
        return value, raw, error, session


    # The developer's result ------------------------------------------------

    def violations(self, snapshot: Snapshot) -> list[Violation]:
        """What in the snapshot the content policy refuses, plus files trusted git could not read."""
        policy = ContentPolicy.from_settings(self.settings, repo=self.repo_config)
        found = check_changes(snapshot.changes, policy)
        found += [Violation(change.path, "unreadable", "the file could not be read back for checking")
                  for change in snapshot.changes if _unread(change, policy.max_file_bytes)]
        return found

    async def capture(self, path: Path) -> Snapshot:
        """Read the developer's result as a tree, hold it to the content policy, checkpoint it.

        A violation goes back to the developer once; if it is still there, the run stops as
        needs_human. Nothing refused is committed, checkpointed or pushed.
        """
        snapshot = await self.deps.worktrees.snapshot(self.run, path)
        violations = self.violations(snapshot)
        if violations:
            await self.db.run(self.queue.moves.add_event, self.run.id, "content_policy", fixed=False,
                              violations=_as_dicts(violations))
            session = await self.session_here("developer")
            result = await self.agent("developer", policy_fix_prompt(violations), path, session_id=session)
            await self.keep_session("developer", result.session_id or session)
            snapshot = await self.deps.worktrees.snapshot(self.run, path)
            violations = self.violations(snapshot)
            if violations:
                await self.db.run(self.queue.moves.add_event, self.run.id, "content_policy", fixed=False,
                                  violations=_as_dicts(violations))
                await self.report_violations(violations)
                listed = ", ".join(f"{v.path} ({v.rule})" for v in violations[:10])
                raise StopRun(Status.NEEDS_HUMAN, f"the change breaks the content policy: {listed}")
            await self.db.run(self.queue.moves.add_event, self.run.id, "content_policy", fixed=True, violations=[])
        await self.update(checkpoint_sha=await self.deps.worktrees.checkpoint(self.run.id, self.run.repo, snapshot))
        return snapshot

    async def report_violations(self, violations: Sequence[Violation]) -> None:
        """Show refused files on the review check of the pushed head (the status comment lists them too)."""
        if not self.run.head_sha:
            return
        summary = "Agent-Z refused to commit these files; nothing of this change was pushed.\n\n"
        report = CheckReport("review", "completed", "failure", "Content policy violation",
                             summary + violations_markdown(violations), notes=violation_annotations(violations))
        await self.coordinator.report_check(self.run, report, head_sha=self.run.head_sha)


def _unread(change: Change, limit: int) -> bool:
    return change.content is None and change.mode not in ("000000", "160000") and change.size <= limit


def _as_dicts(violations: Sequence[Violation]) -> list[dict[str, Any]]:
    return [dataclasses.asdict(v) for v in violations]


def _dearest_call(reads: RunReads, run_id: str) -> float:
    """The cost of the run's dearest agent call so far (any attempt)."""
    return max((float(e.payload.get("cost_usd", 0.0)) for e in reads.events(run_id) if e.kind == "agent_call"),
               default=0.0)


def run_notes(deps: PipelineDeps, run: Run) -> list[str]:
    """Notes for the status comment and the review check (see :func:`workers.reporter.run_notes`)."""
    return reporter_notes(deps.settings, deps.queue.reads.events(run.id))


# Planner ----------------------------------------------------------------------


async def plan_run(deps: PipelineDeps, run: Run, lease: Lease) -> Run:
    """Planning stage of a run claimed into ``planning``: plan → ready / awaiting_approval."""
    gh = await deps.github(run)
    attempt = await Attempt.open(deps, run, lease, gh)
    return await _guarded(attempt, _plan(attempt), on_cancel=Status.QUEUED)


async def _plan(a: Attempt) -> Run:
    issue = await load_issue(a.deps, a.gh, a.run)
    branch = a.run.branch or branch_name(a.run.issue_number, issue.title)
    await a.update(branch=branch, base_branch=issue.default_branch, title=issue.title or a.run.title)
    path = await a.deps.worktrees.resume(a.run.id, a.run.repo, branch, issue.default_branch)
    await a.update(worktree_path=str(path))
    await _configure(a, issue.default_branch)
    if a.deps.consult is not None:
        return await _plan_with_operator(a, a.deps.consult, issue, path)
    plan, raw, error, session = await a.structured(Plan, "task_lead", plan_prompt(issue), path, session_id=None)
    host = a.settings.host_id if session else None
    if plan is None:
        await a.update(plan_raw=raw, session_id=session, session_host=host)
        raise StopRun(Status.FAILED, f"the Task Lead gave no valid plan: {error}", raw=raw[-4000:])
    assert isinstance(plan, Plan)
    if a.run.mode == "plan_only":
        await a.move(Status.AWAITING_APPROVAL, plan=plan.model_dump(), plan_raw=raw, session_id=session,
                     session_host=host, stage="planned")
        await Reporter.from_deps(a.deps).report(a.run.id, gh=a.gh)
        return a.run
    return await a.move(Status.READY, plan=plan.model_dump(), plan_raw=raw, session_id=session, session_host=host,
                        stage="planned")


async def _plan_with_operator(a: Attempt, consult: Consult, issue: IssueContext, path: Path) -> Run:
    """Interactive planning: impact analysis, the operator's answers, the revised plan; one session."""
    impact, raw, error, session = await a.structured(Impact, "task_lead", impact_prompt(issue), path,
                                                     session_id=None)
    if impact is None:
        await a.update(plan_raw=raw, session_id=session, session_host=a.settings.host_id if session else None)
        raise StopRun(Status.FAILED, f"the Task Lead gave no valid impact analysis: {error}", raw=raw[-4000:])
    assert isinstance(impact, Impact)
    await a.update(session_id=session, session_host=a.settings.host_id if session else None)
    await a.db.run(a.queue.moves.add_event, a.run.id, "impact", impact=impact.model_dump())
    answers = (await consult(a.run, impact)).strip()
    plan = impact.as_plan()
    if answers:
        await a.db.run(a.queue.moves.add_event, a.run.id, "operator_answers", chars=len(answers))
        revised, raw, error, session = await a.structured(Plan, "task_lead", revise_prompt(answers), path,
                                                          session_id=session)
        if revised is None:
            raise StopRun(Status.FAILED, f"the Task Lead gave no valid revised plan: {error}", raw=raw[-4000:])
        assert isinstance(revised, Plan)
        plan = revised
    return await a.move(Status.READY, plan=plan.model_dump(), plan_raw=raw, session_id=session,
                        session_host=a.settings.host_id if session else None, stage="planned")


# Worker -----------------------------------------------------------------------


async def work_run(deps: PipelineDeps, run: Run, lease: Lease) -> Run:
    """Development stages of a run claimed in ``ready`` or ``fixing_ci``."""
    gh = await deps.github(run)
    attempt = await Attempt.open(deps, run, lease, gh)
    fixing_ci = run.status == Status.FIXING_CI or run.stage in _CI_STAGES
    body = _fix_ci(attempt) if fixing_ci else _develop(attempt)
    run = await _guarded(attempt, body, on_cancel=Status.READY)
    if run.status == Status.WAITING_CHECKS:
        # CI may have finished before we started waiting. The lease is released by now, so this
        # runs outside the heartbeat, which would otherwise cancel the cleanup after ``done``.
        try:
            run = await settle_ci(deps, gh, run)
        except AgentZError as exc:
            log.warning("settling CI after submit failed; a CI webhook will retry", run_id=run.id, error=str(exc))
    return run


async def _guarded(a: Attempt, body: Coroutine[Any, Any, Run], *, on_cancel: Status) -> Run:
    """Run a stage body under heartbeats; turn stops and failures into clean terminal states."""
    try:
        return await with_heartbeat(a.deps.db, a.queue.leases, a.lease, a.settings.heartbeat_seconds, body)
    except LeaseLost:
        log.warning("lease lost; stopping without further writes", run_id=a.run.id)
        return await a.db.run(a.queue.reads.get, a.run.id)
    except asyncio.CancelledError:
        # Shutting down: hand the run back so it resumes from its recorded stage (even if cancelled again).
        with contextlib.suppress(AgentZError):
            await asyncio.shield(a.db.run(_hand_back, a.queue, a.lease, on_cancel))
        raise
    except StopRun as stop:
        return await _stop(a, stop.status, stop.reason, **stop.event)
    except ForeignBranch as exc:
        return await _stop(a, Status.NEEDS_HUMAN, str(exc))
    except (GitError, GitHubError, RunnerError, OSError, AgentZError) as exc:
        log.warning("infrastructure failure", run_id=a.run.id, error=str(exc))
        return await _infra_failure(a, exc, on_cancel)


def _hand_back(queue: RunQueue, lease: Lease, on_cancel: Status) -> None:
    """Give a run back when its worker stops: to ``on_cancel`` when it may move there, else just release it."""
    status = Status(queue.reads.get(lease.run_id).status)
    if status != Status.FIXING_CI and status in states.LEASED and states.can_transition(status, on_cancel):
        queue.moves.transition(lease, on_cancel, release=True, event={"reason": "worker stopping"})
    else:
        queue.leases.release(lease)


def _give_back(queue: RunQueue, lease: Lease, *, infra_attempts: int, error: str) -> Run:
    """Count an infrastructure failure on a run that stays where it is, and release it."""
    queue.moves.update(lease, infra_attempts=infra_attempts, error=error)
    queue.leases.release(lease)
    return queue.reads.get(lease.run_id)


async def _infra_failure(a: Attempt, exc: Exception, retry_status: Status) -> Run:
    try:
        run = await a.db.run(a.queue.reads.get, a.run.id)
        attempts = run.infra_attempts + 1
        movable = run.status != Status.FIXING_CI and states.can_transition(run.status, retry_status)
        if attempts < a.settings.max_infra_attempts and movable:
            return await a.db.run(a.queue.moves.transition, a.lease, retry_status, error=str(exc)[:2000],
                                  infra_attempts=attempts, release=True, event={"reason": "infrastructure failure"})
        if run.status in (retry_status, Status.FIXING_CI) and attempts < a.settings.max_infra_attempts:
            # Still in ready: no transition needed, just give the run back.
            return await a.db.run(_give_back, a.queue, a.lease, infra_attempts=attempts, error=str(exc)[:2000])
        return await _stop(a, Status.FAILED, f"infrastructure failure: {exc}")
    except LeaseLost:
        return await a.db.run(a.queue.reads.get, a.run.id)


async def _stop(a: Attempt, status: Status, reason: str, **event: Any) -> Run:
    try:
        await a.move(status, error=reason[:4000], release=True, event={"reason": reason[:500], **event})
    except LeaseLost:
        return await a.db.run(a.queue.reads.get, a.run.id)
    await finish_run(a.deps, a.gh, a.run, review=a.review)
    return a.run


def _plan_of(run: Run) -> Plan:
    if not run.plan:
        raise StopRun(Status.FAILED, "the run has no plan")
    return Plan.model_validate(run.plan)


async def _develop(a: Attempt) -> Run:
    run = a.run
    plan = _plan_of(run)
    issue = await load_issue(a.deps, a.gh, run)
    branch = run.branch or branch_name(run.issue_number, issue.title)
    base = run.base_branch or issue.default_branch
    if run.branch != branch or run.base_branch != base:
        await a.update(branch=branch, base_branch=base)
    await _configure(a, base)
    await _recheck_before_development(a, branch)
    if await _deferred_on_claims(a, plan):
        return a.run
    stage, path = await _open_working_copy(a, branch, base)
    while True:
        if stage == "developing":
            if not await _developing(a, issue, plan, path, base):
                return a.run
            stage = "reviewing"
        elif stage == "reviewing":
            stage = await _review(a, issue, plan, path, base)
        elif stage == "fixing":
            await _fixing(a, issue, plan, path, base)
            stage = "reviewing"
        elif not await _local_test(a, path):
            stage = "reviewing"
        else:
            if await _defer_on_conflicts(a, base, resume_at="rebasing"):
                return a.run
            return await _submit(a, issue, plan, base, first=True)


async def _recheck_before_development(a: Attempt, branch: str) -> None:
    """Before the first pull request, cancel a run whose issue no longer qualifies."""
    run = a.run
    if run.pr_number is not None:
        return
    reason = await a.deps.recheck(a.gh, a.settings, run.repo, run.issue_number, run_branch=branch,
                                  force=bool(run.force))
    if reason:
        raise StopRun(Status.CANCELLED, f"cancelled before development: {reason}")


async def _deferred_on_claims(a: Attempt, plan: Plan) -> bool:
    """Claim the plan's files and modules; True when another run holds some and this one was deferred."""
    resources = change_resources(a.run.repo, plan.files, plan.modules)
    conflicts = await a.db.run(a.queue.resources.claim_resources, a.lease, resources)
    if not conflicts:
        return False
    a.run = await a.db.run(a.queue.moves.defer, a.lease, conflicts)
    if a.deps.progress is not None:
        a.deps.progress(a.run, "deferred")
    return True


async def _open_working_copy(a: Attempt, branch: str, base: str) -> tuple[str, Path]:
    """Label the issue as running, resume (or rebase) the working copy and set it up; the stage to go on with."""
    run = a.run
    skip = a.settings.skip_labels[:1]
    await a.coordinator.change_labels(run.repo, run.issue_number, add=[*skip, LABEL_RUNNING], remove=[LABEL_QUEUED])
    path = await a.deps.worktrees.resume(run.id, run.repo, branch, base, checkpoint=run.checkpoint_sha)
    await a.update(worktree_path=str(path))
    stage = run.stage if run.stage in _RESUMABLE_STAGES else "developing"
    if run.stage == "rebasing":
        stage, path = await _rebase(a, branch, base, path)
    await _setup(a, path)
    if stage in ("fixing", "submitting"):
        a.review = await a.db.run(_last_review, a.queue.reads, run.id)
        if a.review is None:
            stage = "reviewing"  # no stored review to fix or submit with: review again
    return stage, path


async def _developing(a: Attempt, issue: IssueContext, plan: Plan, path: Path, base: str) -> bool:
    """The developer implements the plan; False when the run was deferred on conflicting changes."""
    await a.move(Status.DEVELOPING, stage="developing")
    await a.developer(develop_prompt(issue, plan), path, context=Handover(base))
    changed = (await a.capture(path)).changed_paths
    if not changed:
        raise StopRun(Status.NEEDS_HUMAN, "the developer made no changes")
    return not await _defer_on_conflicts(a, base, resume_at="rebasing")


async def _fixing(a: Attempt, issue: IssueContext, plan: Plan, path: Path, base: str) -> None:
    """The developer fixes the review's blocking findings."""
    assert a.review is not None
    await a.move(Status.FIXING, stage="fixing")
    prompt = fix_review_prompt(a.review.blocking_findings, summary=a.review.summary)
    await a.developer(prompt, path, context=Handover(base, issue, plan))
    await a.capture(path)


async def _configure(a: Attempt, base: str) -> None:
    """Apply the repository's ``.github/agent-z.yml`` at the head of ``base`` (invalid or absent: the host's).

    Read from the mirror the run's working copy comes from; where this host has no mirror
    of the repository yet, the configuration another role stored is used.
    """
    stored: StoredConfig | None
    try:
        stored = await load_repo_config(a.deps.worktrees, a.deps.db, a.run.repo, base, gh=a.gh)
    except (GitError, OSError, ValueError) as exc:  # no mirror here yet: what another role stored
        log.info("repository configuration read from the store", run_id=a.run.id, reason=str(exc))
        stored = await a.db.run(stored_config, a.db, a.run.repo)
    if stored is None:
        return
    a.repo_config = stored.config
    a.settings = effective_settings(a.deps.settings, stored.config)


async def _setup(a: Attempt, path: Path) -> None:
    """Run the repository's setup commands in the agent's sandbox; a failure needs a human."""
    if a.repo_config is None or not a.repo_config.setup:
        return
    failed = await run_setup(a.settings, a.repo_config.setup, path, run_id=a.run.id, read_only=a._read_only(),
                             extra_env=a.deps.extra_agent_env)
    await a.db.run(a.queue.moves.add_event, a.run.id, "setup", passed=failed is None, commands=len(a.repo_config.setup))
    if failed is not None:
        raise StopRun(Status.NEEDS_HUMAN, failure_reason("setup", failed))


async def _local_test(a: Attempt, path: Path) -> bool:
    """Run the repository's test command on the change; a failure goes back to the developer (False).

    Failures count towards MAX_REVIEW_ROUNDS over the whole run; past it the run needs a human.
    """
    command = a.repo_config.test if a.repo_config is not None else None
    if not command:
        return True
    outcome = await run_repo_command(a.settings, command, path, run_id=a.run.id, log_name="test",
                                     read_only=a._read_only(), extra_env=a.deps.extra_agent_env)
    events = await a.db.run(a.queue.reads.events, a.run.id)
    failures = sum(1 for e in events if e.kind == "local_test" and not e.payload.get("passed"))
    await a.db.run(a.queue.moves.add_event, a.run.id, "local_test", passed=outcome.passed, exit_code=outcome.exit_code)
    if outcome.passed:
        return True
    if failures + 1 >= a.settings.max_review_rounds:
        raise StopRun(Status.NEEDS_HUMAN, f"after {failures + 1} rounds, " + failure_reason("test", outcome))
    for target in (Status.FIXING, Status.DEVELOPING):
        if states.can_transition(Status(a.run.status), target):
            await a.move(target, stage="fixing")
            break
    context = Handover(a.run.base_branch or "main", plan=_plan_of(a.run))
    await a.developer(local_test_prompt(outcome), path, context=context)
    await a.capture(path)
    return False


async def _defer_on_conflicts(a: Attempt, base: str, *, resume_at: str) -> bool:
    """Claim the files the change actually touches (and their modules); when another run holds
    one, defer until that run's PR is merged or closed, then continue at ``resume_at``."""
    if not a.run.checkpoint_sha:
        return False
    changed = await a.deps.worktrees.changed_files(a.run.repo, base, a.run.checkpoint_sha)
    if not changed:
        return False
    conflicts = await a.db.run(a.queue.resources.claim_resources, a.lease, change_resources(a.run.repo, changed))
    if not conflicts:
        return False
    a.run = await a.db.run(a.queue.moves.defer, a.lease, conflicts, reason="the change touches files another run holds",
                           stage=resume_at)
    if a.deps.progress is not None:
        a.deps.progress(a.run, "deferred")
    return True


async def _rebase(a: Attempt, branch: str, base: str, path: Path) -> tuple[str, Path]:
    """Put a woken run's checkpoint on the current base (in the mirror); re-develop when that conflicts.

    Returns the stage to continue at and the rebuilt working copy.
    """
    run = a.run
    rebased = None
    if run.checkpoint_sha:
        rebased = await a.deps.worktrees.rebase_checkpoint(run.id, run.repo, base, run.checkpoint_sha)
    if rebased is not None:
        moved = rebased != run.checkpoint_sha
        await a.db.run(a.queue.moves.add_event, run.id, "rebased", onto=base, checkpoint=rebased, moved=moved)
        if moved:
            # The pushed head is on the old base: the next commit replaces it (a forced push
            # to the run's own branch, same pull request).
            await a.update(checkpoint_sha=rebased, head_sha=None)
            path = await a.deps.worktrees.resume(run.id, run.repo, branch, base, checkpoint=rebased)
        a.review = await a.db.run(_last_review, a.queue.reads, run.id)
        return ("submitting" if a.review is not None and a.review.approved else "reviewing"), path
    await a.db.run(a.queue.moves.add_event, run.id, "rebased", onto=base, checkpoint=None, moved=False, conflict=True)
    await a.deps.worktrees.delete_checkpoint(run.id, run.repo)
    await a.update(checkpoint_sha=None, head_sha=None)
    return "developing", await a.deps.worktrees.create(run.id, run.repo, branch, base)


def _last_review(reads: RunReads, run_id: str) -> Review | None:
    for event in reversed(reads.events(run_id)):
        if event.kind == "review" and isinstance(event.payload.get("review"), dict):
            try:
                return Review.model_validate(event.payload["review"])
            except ValueError:
                return None
    return None


async def _review(a: Attempt, issue: IssueContext, plan: Plan, path: Path, base: str) -> str:
    round_ = a.run.review_round + 1
    await a.move(Status.REVIEWING, stage="reviewing", review_round=round_)
    if not a.run.checkpoint_sha:
        raise StopRun(Status.FAILED, "nothing to review: the run has no checkpoint")
    changed = await a.deps.worktrees.changed_files(a.run.repo, base, a.run.checkpoint_sha)
    diff = await a.deps.worktrees.diff(a.run.repo, base, a.run.checkpoint_sha)
    prompt = review_prompt(issue, plan, changed_files=changed, diff=diff, round_=round_)
    review, raw, error, session = await a.structured(Review, "reviewer", prompt, path,
                                                     session_id=await a.session_here("reviewer"))
    await a.keep_session("reviewer", session)
    if review is None:
        raise StopRun(Status.FAILED, f"the Reviewer gave no valid review: {error}", raw=raw[-4000:])
    assert isinstance(review, Review)
    a.review = review
    await a.db.run(a.queue.moves.add_event, a.run.id, "review", round=round_, approved=review.approved,
                   review=review.model_dump())
    if review.approved:
        return "submitting"
    if round_ >= a.settings.max_review_rounds:
        raise StopRun(Status.NEEDS_HUMAN, f"review still blocking after {round_} rounds")
    return "fixing"


async def _fix_ci(a: Attempt) -> Run:
    run = a.run
    plan = _plan_of(run)
    issue = await load_issue(a.deps, a.gh, run)
    base = run.base_branch or issue.default_branch
    if not run.branch:
        raise StopRun(Status.FAILED, "the run has no branch to fix")
    path = await a.deps.worktrees.resume(run.id, run.repo, run.branch, base, checkpoint=run.checkpoint_sha)
    await a.update(worktree_path=str(path))
    await _configure(a, base)
    await _setup(a, path)
    if run.stage == "ci_rebasing":
        rebased = None
        if run.checkpoint_sha:
            rebased = await a.deps.worktrees.rebase_checkpoint(run.id, run.repo, base, run.checkpoint_sha)
        if rebased is None:
            raise StopRun(Status.NEEDS_HUMAN, "the fix conflicts with the base branch after another run's merge")
        if rebased != run.checkpoint_sha:
            await a.update(checkpoint_sha=rebased, head_sha=None)
        await a.update(stage="ci_submitting")
    elif run.stage != "ci_submitting":
        feedback = dict(run.feedback or {})
        await a.update(stage="ci_fixing")
        await a.developer(feedback_prompt(feedback), path, context=Handover(base, issue, plan))
        await a.capture(path)
        while not await _local_test(a, path):
            pass
        await a.update(stage="ci_submitting")
    if await _defer_on_conflicts(a, base, resume_at="ci_rebasing"):
        return a.run
    a.review = await a.db.run(_last_review, a.queue.reads, run.id)
    return await _submit(a, issue, plan, base, first=False)


async def _submit(a: Attempt, issue: IssueContext, plan: Plan, base: str, *, first: bool) -> Run:
    """Commit, push, PR, check runs and status comment; then wait for CI without a lease."""
    await a.move(Status.SUBMITTING, stage="submitting" if first else "ci_submitting")
    run = a.run
    if run.head_sha is None:
        message = commit_message(run.issue_number, issue.title or run.title, plan.summary,
                                 secret_values=a.coordinator.secret_values)
    else:
        kind = "review feedback" if (run.feedback or {}).get("kind") == "review" else "CI failure"
        message = f"Address {kind} on #{run.issue_number} (round {run.ci_round})\n"
    committed = await a.coordinator.commit(run, message)
    sha = committed or run.head_sha
    if sha is None:
        raise StopRun(Status.NEEDS_HUMAN, "nothing to submit: the change is empty")
    changed = await a.deps.worktrees.changed_files(run.repo, base, sha)
    head = await a.coordinator.push(run, sha)
    review_md = a.review.summary if a.review is not None else None
    pr = await a.coordinator.ensure_pull(
        run, title=f"Fix #{run.issue_number}: {issue.title or run.title}"[:250],
        body=pr_body(run.issue_number, plan.summary, review_md, run.id, secret_values=a.coordinator.secret_values),
    )
    # Point the checkpoint at what was pushed, so a resume elsewhere continues from this head.
    await a.deps.worktrees.point_checkpoint(run.id, run.repo, head)
    await a.update(pr_number=pr, head_sha=head, checkpoint_sha=head)
    reports: list[CheckReport] = []
    if first:
        conclusion, title, summary = plan_check(plan)
        reports.append(CheckReport("plan", "completed", conclusion, title, summary))
        if a.review is not None:
            events = await a.db.run(a.queue.reads.events, run.id)
            cost_md = cost_markdown(call_costs(events), limit_usd=a.settings.max_cost_per_run_usd)
            conclusion, title, summary = review_check(a.review, rounds=a.run.review_round, changed_files=changed,
                                                      cost_md=cost_md)
            notes = reporter_notes(a.settings, events)
            if notes:
                summary += "\n\n**Sandbox**\n" + "\n".join(f"- {note}" for note in notes)
            reports.append(CheckReport("review", "completed", conclusion, title, summary,
                                       notes=finding_annotations(a.review.findings)))
    else:
        ci_conclusion, title, summary = ci_fix_check(a.run.ci_round, a.run.feedback, done=True)
        reports.append(CheckReport("ci-fix", "completed", ci_conclusion, title, summary))
    for report in reports:
        await a.coordinator.report_check(a.run, report, head_sha=head)
    # Releases the lease: :func:`work_run` settles CI afterwards, outside the heartbeat.
    await a.move(Status.WAITING_CHECKS, stage="submitted", release=True)
    await Reporter.from_deps(a.deps).report(a.run.id, gh=a.gh)
    return a.run


# Terminal cleanup ---------------------------------------------------------------


async def finish_run(deps: PipelineDeps, gh: GitHubAPI, run: Run, *, review: Review | None = None) -> None:
    """Cleanup for every terminal path: GitHub view, claims, worktree, checkpoint. Best effort, idempotent.

    The GitHub view (labels, status comment with the reason, check runs, review request)
    is the reporter's projection of the run's state: if it fails here, the run stays stale
    and a reporter shows it later. ``review`` is kept for callers; the reporter reads the
    run's latest review from its events.
    """
    await Reporter.from_deps(deps).report(run.id, gh=gh)
    steps: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
        ("worktree", lambda: deps.worktrees.remove(run.id, run.repo)),
    ]
    if run.status in (Status.MERGED, Status.CANCELLED):
        steps.append(("checkpoint", lambda: deps.worktrees.delete_checkpoint(run.id, run.repo)))
    for name, step in steps:
        try:
            await step()
        except (AgentZError, OSError) as exc:
            log.warning("cleanup step failed", run_id=run.id, step=name, error=str(exc))
    holds_claims = run.status == Status.DONE and deps.settings.claims_until_merged  # until merged or closed
    if run.status in states.TERMINAL and not holds_claims:
        with contextlib.suppress(AgentZError):
            await deps.db.run(deps.queue.resources.release_resources, run.id, keep_issue=False)


# CI results ---------------------------------------------------------------------


SETTLE_LOOKBACK_SECONDS = 120.0  # how far back a done run's head is checked for a late failure


def ci_verdict(deps: PipelineDeps, run: Run, *, at: float | None = None) -> Verdict:
    """The CI verdict of the run's head from the stored signals (a database read, no GitHub call)."""
    assert run.head_sha is not None
    with deps.db.read() as session:
        checks, suites = ci_signals(session, run.repo, run.head_sha)
        has_ci = repo_has_ci(session, run.repo)
    settings = deps.settings
    policy = CIPolicy(own_slug=settings.github_app_slug, quiet_seconds=settings.ci_quiet_seconds,
                      grace_seconds=settings.ci_grace_seconds, repo_has_ci=has_ci, waiting_since=run.updated_at)
    return decide_ci(checks, suites, now() if at is None else at, policy=policy)


async def settle_ci(deps: PipelineDeps, gh: GitHubAPI, run: Run) -> Run:
    """Move a run waiting on CI to done or fixing_ci once the verdict on its head is decided.

    A decided verdict is confirmed against GitHub's own listing of the head's suites, check
    runs and statuses before anything moves: a webhook may be late or lost. A run already
    done goes back to fixing_ci when CI on its head fails afterwards (a re-run of a job, a
    late suite). A failure hands the fixer each failed job's log tail (GitHub Actions) or
    output and annotations (other Apps).
    """
    if run.status not in (Status.WAITING_CHECKS, Status.DONE) or not run.head_sha:
        return run
    verdict = await deps.db.run(ci_verdict, deps, run)
    if not verdict.decided or (run.status == Status.DONE and verdict.outcome != "failure"):
        return run
    await refresh_ci(gh, deps.db, run.repo, run.head_sha, own_slug=deps.settings.github_app_slug)
    verdict = await deps.db.run(ci_verdict, deps, run)
    if not verdict.decided or (run.status == Status.DONE and verdict.outcome != "failure"):
        return run
    try:
        if verdict.outcome == "success":
            run = await deps.db.run(deps.queue.moves.set_status, run.id, Status.DONE, reason=verdict.reason, actor="ci",
                                    expected_attempt=run.attempt, stage=None)
            await finish_run(deps, gh, run, review=await deps.db.run(_last_review, deps.queue.reads, run.id))
            return run
        feedback = await ci_failure_feedback(gh, run.repo, verdict,
                                             secret_values=configured_secret_values(deps.settings))
        return await request_fix(deps, gh, run, feedback, reason=verdict.reason)
    except LeaseLost:
        return await deps.db.run(deps.queue.reads.get, run.id)


def _unsettled(deps: PipelineDeps, recent: float) -> tuple[list[Run], list[Run]]:
    """Runs waiting on CI, and done runs whose head's CI changed since ``recent``."""
    with deps.db.read() as session:
        changed = heads_changed_since(session, recent)
    done = [run for run in deps.queue.reads.list_runs(statuses=[Status.DONE], limit=1000)
            if (run.repo, run.head_sha) in changed]
    return deps.queue.reads.list_runs(statuses=[Status.WAITING_CHECKS], limit=1000), done


async def settle_waiting(deps: PipelineDeps) -> list[Run]:
    """Settle waiting runs that no webhook will wake: CI finished before anyone waited (a PR
    adopted after its checks ran, a wake-up lost in a crash), a quiet window that ended, or
    no CI result within ``CI_GRACE_SECONDS`` in a repository that never reported CI; and done
    runs whose head's CI failed since (the failure's quiet window ended after its webhook).

    Deciding is a database read; GitHub is only called for the runs whose verdict is decided.
    """
    settled = []
    # A done run is reopened by a failure on its head; only heads with recent CI changes can have one.
    recent = now() - 3 * deps.settings.ci_quiet_seconds - SETTLE_LOOKBACK_SECONDS
    waiting, done = await deps.db.run(_unsettled, deps, recent)
    for run in [*waiting, *done]:
        verdict = await deps.db.run(ci_verdict, deps, run) if run.head_sha else None
        if verdict is None or not verdict.decided or (run.status == Status.DONE and verdict.outcome != "failure"):
            continue
        try:
            settled.append(await settle_ci(deps, await deps.github(run), run))
        except AgentZError as exc:
            log.warning("could not settle a waiting run", run_id=run.id, error=str(exc))
    return settled


async def request_fix(deps: PipelineDeps, gh: GitHubAPI, run: Run, feedback: dict[str, Any], *, reason: str) -> Run:
    """Send a submitted run back to a worker with feedback, or to a human after too many rounds."""
    if run.ci_round >= deps.settings.max_review_rounds:
        run = await deps.db.run(deps.queue.moves.set_status, run.id, Status.NEEDS_HUMAN,
                                reason=f"{reason} after {run.ci_round} fix rounds", actor="ci",
                                expected_attempt=run.attempt, feedback=feedback,
                                error=f"{reason} after {run.ci_round} fix rounds")
        await finish_run(deps, gh, run)
        return run
    run = await deps.db.run(deps.queue.moves.set_status, run.id, Status.FIXING_CI, reason=reason, actor="ci",
                            expected_attempt=run.attempt, feedback=feedback, ci_round=run.ci_round + 1,
                            stage="ci_fixing")
    return run
