"""The scheduler's service layer: gates → stored assessments → Scheduler Agent → enqueue.

:func:`schedule_once` evaluates repositories (every one with open issues, or those
given). Cheap deterministic gates come first (labels, trust, runs, pull requests,
dependencies — missing ones are looked up on GitHub). The Scheduler Agent's
assessment of each issue is stored with the issue's content fingerprint, so the agent
is asked only about new or changed candidates, in prompts of at most
``SCHEDULER_PROMPT_CANDIDATES`` issues and ``SCHEDULER_PROMPT_CHARS`` characters,
most recently active first; the queue is then ranked from the stored scores.
:func:`run_scheduler` is the long-running role: it wakes on dirty marks and on runs
reaching a terminal status (a cheap DB read every ``poll_seconds``, never a GitHub
poll), debounces each repository on its own with a ceiling, and schedules only the
repositories that are due.

The decisions are pure functions in :mod:`agentz_app.domain.scheduling` (wake-ups,
gate results, what to assess, reports) and :mod:`agentz_app.domain.admission`
(capacity, order, batch size); this module reads the snapshot, calls them and writes
their outcome; a repository's admission (its enqueues) and every verdict form one
transaction. The runners come from the caller: a runner for the host's scheduler backend
and a :data:`RunnerFactory` for repositories whose ``.github/agent-z.yml`` chooses another.

Verdicts written to ``issues.verdict``: ``queued`` (enqueued, or its run is still
queued), ``ran`` (its run is past the queue), ``skipped:<gate>``,
``rejected:<kind>``, ``ranked`` (ranked but no free slot: eligible next time) and
``unranked`` (the agent said nothing about it, or ranking failed).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from agentz_app.config import Settings
from agentz_app.domain import gates
from agentz_app.domain.admission import Capacity, admission_order, admission_refusal, forced_numbers
from agentz_app.domain.debounce import Debounce
from agentz_app.domain.dependencies import IssueRef, parse_dependencies
from agentz_app.domain.fingerprint import issue_fingerprint
from agentz_app.domain.gates import GateContext, IssueView, PullView, Verdict
from agentz_app.domain.runner import Runner
from agentz_app.domain.scheduling import (
    Assessment,
    CandidateReport,
    Window,
    assessments_from,
    decide_wake,
    fresh_snapshot,
    plan_assessment,
    split_gate_results,
    unadmitted_report,
)
from agentz_app.domain.states import LIVE, TERMINAL
from agentz_app.errors import InvalidAgentOutput, RunnerError
from agentz_app.logs import get_logger
from agentz_app.permissions import Actor, TrustPolicy, check_actor, stored_decision
from agentz_app.repo_config import settings_for
from agentz_app.scheduling.agent import plan_batches, rank_candidates
from agentz_app.scheduling.lookups import AppClients, look_up, stored_lookups
from agentz_app.store import trust
from agentz_app.store.db import Database
from agentz_app.store.models import (
    IssueAssessment,
    IssueComment,
    IssueSnapshot,
    PullSnapshot,
    Repository,
    Run,
    now,
)
from agentz_app.store.runs import Intake, RunQueue, Transitions
from agentz_app.store.scheduler_state import PassSummary, clear_dirty, dirty_repos, record_pass, resync_state

log = get_logger(__name__)

RunnerFactory = Callable[[str], Runner]  # a scheduler backend name → its runner

# An issue author's stored permission counts this long; then the next pass asks GitHub again.
AUTHOR_PERMISSION_MAX_AGE_SECONDS = 6 * 3600.0
MAX_AUTHOR_LOOKUPS_PER_PASS = 50


@dataclass
class RepoState:
    """Everything the gates need for one repository, read in one transaction."""

    repo: str
    installation_id: int | None
    issues: list[IssueView]
    pulls: list[PullView]
    live: dict[IssueRef, str]
    last_runs: dict[IssueRef, str]
    dependency_states: dict[IssueRef, str]
    fresh: bool
    dependencies: dict[int, list[IssueRef]] = field(default_factory=dict)
    dependency_errors: dict[IssueRef, str] = field(default_factory=dict)
    assessments: dict[int, Assessment] = field(default_factory=dict)


# Reading --------------------------------------------------------------------------


def scheduled_repos(session: Session) -> list[str]:
    """Repositories with open issue snapshots, minus deactivated ones."""
    repos = set(session.scalars(select(IssueSnapshot.repo).where(IssueSnapshot.state == "open").distinct()))
    inactive = set(session.scalars(select(Repository.full_name).where(Repository.active.is_(False))))
    return sorted(repos - inactive)


def live_runs(session: Session) -> dict[IssueRef, str]:
    """Issues holding a live run, with the run's status."""
    rows = session.execute(select(Run.repo, Run.issue_number, Run.status).where(Run.status.in_([str(s) for s in LIVE])))
    return {IssueRef(repo, number): status for repo, number, status in rows}


def last_finished_runs(session: Session, repo: str) -> dict[IssueRef, str]:
    """The status of each issue's newest run, for issues whose newest run is terminal."""
    newest: dict[IssueRef, tuple[float, str]] = {}
    for number, status, created in session.execute(
        select(Run.issue_number, Run.status, Run.created_at).where(Run.repo == repo)
    ):
        ref = IssueRef(repo, number)
        if ref not in newest or created >= newest[ref][0]:
            newest[ref] = (created, status)
    return {ref: status for ref, (_, status) in newest.items() if status in TERMINAL}


def terminal_marker(session: Session) -> tuple[int, float]:
    """Changes whenever a run reaches (or leaves) a terminal status: frees slots."""
    count, latest = session.execute(
        select(func.count(Run.id), func.max(Run.updated_at)).where(Run.status.in_([str(s) for s in TERMINAL]))
    ).one()
    return int(count or 0), float(latest or 0.0)


def snapshot_fresh(session: Session, repo: str, settings: Settings, *, at: float) -> bool:
    """False when resync keeps failing and the last good sync is too old to trust."""
    cursor = resync_state(session, repo)
    if cursor is None:
        return fresh_snapshot(None, None, at=at, interval=settings.resync_interval_seconds)
    return fresh_snapshot(cursor.ok_at, cursor.failed_at, at=at, interval=settings.resync_interval_seconds)


def _issue_view(row: IssueSnapshot, comments: Sequence[str], *, author_trusted: bool = False,
                trusted_labels: Sequence[str] = ()) -> IssueView:
    return IssueView(
        repo=row.repo,
        number=row.number,
        title=row.title or "",
        body=row.body or "",
        state=row.state,
        state_reason=row.state_reason,
        labels=tuple(row.labels or ()),
        assignees=tuple(row.assignees or ()),
        is_pull_request=bool(row.is_pull_request),
        updated_at=row.updated_at or "",
        comments=tuple(comments),
        author=row.author or "",
        author_trusted=author_trusted,
        trusted_labels=tuple(trusted_labels),
        author_association=row.author_association,
    )


def trusted_authors(session: Session, settings: Settings, repo: str, authors: Iterable[str], *,
                    at: float) -> set[str]:
    """The (lower-case) authors whose stored permission passes the rule and is recent enough."""
    return {
        author.lower() for author in set(authors) if author and stored_decision(
            session, settings, repo, Actor.from_login(author), max_age=AUTHOR_PERMISSION_MAX_AGE_SECONDS, at=at
        ).allowed
    }


def _pull_view(row: PullSnapshot) -> PullView:
    return PullView(
        repo=row.repo,
        number=row.number,
        state=row.state,
        title=row.title or "",
        body=row.body or "",
        head_ref=row.head_ref or "",
        linked_issues=tuple(row.linked_issues or ()),
    )


def load_repo_state(session: Session, repo: str, settings: Settings, *, live: dict[IssueRef, str]) -> RepoState:
    """Read one repository's open issues, comments, open PRs and dependency states."""
    rows = session.scalars(
        select(IssueSnapshot)
        .where(IssueSnapshot.repo == repo, IssueSnapshot.state == "open")
        .order_by(IssueSnapshot.number)
    ).all()
    comments: dict[int, list[str]] = defaultdict(list)
    for number, body in session.execute(
        select(IssueComment.issue_number, IssueComment.body)
        .where(IssueComment.repo == repo, IssueComment.from_app.is_(False))
        .order_by(IssueComment.id)
    ):
        comments[number].append(body or "")
    vouched = trust.trusted_labels(session, repo)
    trusted = trusted_authors(session, settings, repo, [row.author for row in rows], at=now())
    issues = [
        _issue_view(row, comments.get(row.number, []), author_trusted=(row.author or "").lower() in trusted,
                    trusted_labels=vouched.get(row.number, ()))
        for row in rows
    ]
    pulls = [
        _pull_view(row)
        for row in session.scalars(select(PullSnapshot).where(PullSnapshot.repo == repo, PullSnapshot.state == "open"))
    ]
    dependencies = {issue.number: parse_dependencies([issue.body, *issue.comments], repo) for issue in issues}
    wanted = {ref for refs in dependencies.values() for ref in refs}
    states: dict[IssueRef, str] = {}
    for dep_repo in {ref.repo for ref in wanted}:
        numbers = [ref.number for ref in wanted if ref.repo == dep_repo]
        for number, state in session.execute(
            select(IssueSnapshot.number, IssueSnapshot.state).where(
                IssueSnapshot.repo == dep_repo, IssueSnapshot.number.in_(numbers)
            )
        ):
            states[IssueRef(dep_repo, number)] = state
    errors: dict[IssueRef, str] = {}
    for ref, known in stored_lookups(session, wanted - set(states)).items():
        if known.state is not None:
            states[ref] = known.state
        elif known.error:
            errors[ref] = known.error
    installation_id = session.scalar(select(Repository.installation_id).where(Repository.full_name == repo))
    assessments = {
        row.number: Assessment(row.number, row.fingerprint, row.outcome, row.score, row.reason)
        for row in session.scalars(select(IssueAssessment).where(IssueAssessment.repo == repo))
    }
    return RepoState(
        repo=repo,
        installation_id=installation_id,
        issues=issues,
        pulls=pulls,
        live={ref: status for ref, status in live.items() if ref.repo == repo},
        last_runs=last_finished_runs(session, repo),
        dependency_states=states,
        fresh=snapshot_fresh(session, repo, settings, at=now()),
        dependencies=dependencies,
        dependency_errors=errors,
        assessments=assessments,
    )


# Deciding (pure) ------------------------------------------------------------------


def gate_context(settings: Settings, state: RepoState) -> GateContext:
    return GateContext.from_settings(
        settings,
        live_runs=state.live,
        last_runs=state.last_runs,
        dependency_states=state.dependency_states,
        dependency_errors=state.dependency_errors,
        open_pulls=state.pulls,
        snapshot_fresh=state.fresh,
    )


# Writing --------------------------------------------------------------------------


def _store_assessments(db: Database, repo: str, assessments: Iterable[Assessment]) -> None:
    stamp = now()
    with db.begin() as session:
        for item in assessments:
            row = session.get(IssueAssessment, (repo, item.number))
            if row is None:
                row = IssueAssessment(repo=repo, number=item.number)
                session.add(row)
            row.fingerprint, row.outcome, row.score = item.fingerprint, item.outcome, item.score
            row.reason, row.assessed_at = item.reason[:2000], stamp


def _record_outcome_in(session: Session, repo: str, *, forgotten: Iterable[int], summary: PassSummary,
                       reports: Iterable[CandidateReport]) -> None:
    """Write a repository's pass: forget closed issues' assessments, the pass summary, and every issue's verdict."""
    gone = sorted(set(forgotten))
    by_number = {report.number: report for report in reports}
    stamp = now()
    if gone:
        session.execute(delete(IssueAssessment).where(IssueAssessment.repo == repo,
                                                      IssueAssessment.number.in_(gone)))
    record_pass(session, repo, summary)
    if not by_number:
        return
    for issue in session.scalars(
        select(IssueSnapshot).where(IssueSnapshot.repo == repo, IssueSnapshot.number.in_(list(by_number)))
    ):
        report = by_number[issue.number]
        if issue.verdict != report.verdict or issue.verdict_reason != report.reason:
            issue.verdict = report.verdict
            issue.verdict_reason = report.reason
            issue.verdict_at = stamp


# The pass -------------------------------------------------------------------------


def _load_states(db: Database, settings: Settings,
                 repos: Iterable[str] | None) -> tuple[dict[IssueRef, str], list[RepoState]]:
    """The live runs and the state of every repository to schedule (``repos``, or all), in one read."""
    with db.read() as session:
        live = live_runs(session)
        names = sorted(set(repos)) if repos is not None else scheduled_repos(session)
        return live, [load_repo_state(session, name, settings, live=live) for name in names]


async def schedule_once(
    db: Database, settings: Settings, runner: Runner, *, force: bool = False, repos: Iterable[str] | None = None,
    github: AppClients | None = None, runner_for: RunnerFactory | None = None,
) -> list[CandidateReport]:
    """One scheduling pass over every repository (or ``repos``); returns each issue's outcome.

    ``runner`` serves the host's scheduler backend; ``runner_for`` builds the runner of a
    repository whose ``.github/agent-z.yml`` chooses another one (without it, ``runner``
    serves every repository). ``github`` (the App client factory) lets the pass look up
    the permission of issue authors it does not know yet (``SCHEDULER_TRUST=maintainers``)
    and referenced issues missing from the snapshots; without it, unknown authors do
    not pass and such dependencies stay unknown.
    """
    queue = RunQueue(db, lease_seconds=settings.lease_seconds)
    live, states = await db.run(_load_states, db, settings, repos)
    capacity = Capacity.from_live((ref.repo for ref in live), max_parallel=settings.max_parallel_tasks,
                                  per_repo_limit=settings.per_repo_limit)
    reports: list[CandidateReport] = []
    host_backend = settings.backend_for("scheduler")
    for state in states:
        # labels, parallelism, backends of .github/agent-z.yml
        repo_settings = await db.run(settings_for, db, settings, state.repo)
        backend = repo_settings.backend_for("scheduler")
        repo_runner = runner if backend == host_backend or runner_for is None else runner_for(backend)
        found, capacity = await _schedule_repo(db, repo_settings, repo_runner, queue, state,
                                               capacity.limited_to(repo_settings.per_repo_limit), force=force,
                                               github=github)
        reports += found
    return reports


async def _gate(db: Database, settings: Settings, state: RepoState,
                github: AppClients | None) -> list[tuple[IssueView, Verdict]]:
    """Evaluate the gates, asking GitHub about unknown authors and unknown dependencies when it can."""
    results = gates.evaluate_all(state.issues, gate_context(settings, state))
    if github is None:
        return results
    again = await _resolve_authors(github, db, settings, state, results)
    if again:
        results = gates.evaluate_all(state.issues, gate_context(settings, state))
    if await _resolve_dependencies(github, db, state, results):
        results = gates.evaluate_all(state.issues, gate_context(settings, state))
    return results


async def _schedule_repo(
    db: Database,
    settings: Settings,
    runner: Runner,
    queue: RunQueue,
    state: RepoState,
    capacity: Capacity,
    *,
    force: bool,
    github: AppClients | None = None,
) -> tuple[list[CandidateReport], Capacity]:
    """Gate, assess what changed, admit by rank; returns the reports and the capacity left."""
    repo = state.repo
    split = split_gate_results(await _gate(db, settings, state, github), state.live)
    reports: dict[int, CandidateReport] = {report.number: report for report in split.skipped}
    candidates = split.candidates
    fingerprints = {issue.number: issue_fingerprint(issue, state.dependencies.get(issue.number, ()))
                    for issue in candidates}
    plan = plan_assessment(candidates, fingerprints, state.assessments, (issue.number for issue in state.issues))
    assessments = dict(plan.current)
    calls, chars, failure = await _assess(db, settings, runner, queue.moves, repo, plan.unassessed, fingerprints,
                                          assessments)
    by_number = {issue.number: issue for issue in candidates}
    order = [item for item in admission_order(assessments.values(), force=force) if item.number in by_number]
    forced = forced_numbers(assessments.values(), force=force)
    admission = Admission(order, forced, capacity, reports)
    summary = PassSummary(at=now(), calls=calls, prompt_chars=chars, candidates=len(candidates),
                          assessed=len(plan.unassessed), admitted=0)
    admitted, capacity = await db.run(admit, queue, settings, state, admission, candidates, assessments,
                                      failure=failure, forgotten=plan.forgotten, summary=summary)
    if calls:
        log.info("scheduler assessed candidates", repo=repo, candidates=len(candidates),
                 assessed=len(plan.unassessed), calls=calls, admitted=admitted)
    return sorted(reports.values(), key=lambda report: report.number), capacity


@dataclass
class Admission:
    """A repository's admission: candidates in order, the forced ones, the capacity, and the reports so far."""

    order: Sequence[Assessment]
    forced: frozenset[int]
    capacity: Capacity
    reports: dict[int, CandidateReport]


def admit(queue: RunQueue, settings: Settings, state: RepoState, admission: Admission,
          candidates: Sequence[IssueView], assessments: dict[int, Assessment], *, failure: str,
          forgotten: Iterable[int], summary: PassSummary) -> tuple[int, Capacity]:
    """Enqueue the admitted candidates and write every verdict and the pass summary, in one transaction.

    Adds each candidate's report to ``admission.reports``; returns (runs admitted, capacity left).
    """
    with queue.db.begin() as session:
        admitted, capacity = _admit_in(session, settings, queue.intake, state, admission)
        reports = admission.reports
        for issue in candidates:
            if issue.number not in reports:
                reports[issue.number] = unadmitted_report(issue, assessments.get(issue.number), failure=failure)
        _record_outcome_in(session, state.repo, forgotten=forgotten, summary=replace(summary, admitted=admitted),
                           reports=reports.values())
    return admitted, capacity


def _admit_in(session: Session, settings: Settings, intake: Intake, state: RepoState,
              admission: Admission) -> tuple[int, Capacity]:
    """Enqueue ranked candidates while admission allows, adding each one's report; returns (admitted, capacity left)."""
    repo, capacity, reports = state.repo, admission.capacity, admission.reports
    by_number = {issue.number: issue for issue in state.issues}
    admitted = 0
    for rank, item in enumerate(admission.order, start=1):
        issue = by_number[item.number]
        refusal = admission_refusal(capacity, repo, admitted=admitted, batch_size=settings.scheduler_batch_size)
        if refusal is not None:
            reports[issue.number] = CandidateReport(repo, issue.number, issue.title, "ranked",
                                                    f"{refusal}; {item.reason}", rank=rank, score=item.score)
            continue
        run, created = intake.enqueue_in(
            session, repo, issue.number, installation_id=state.installation_id, title=issue.title,
            force=issue.number in admission.forced, requested_by="scheduler",
            reason=f"ranked #{rank} (score {item.score}): {item.reason}", issue_updated_at=issue.updated_at,
        )
        if created:  # a run someone else enqueued meanwhile takes no new slot
            capacity = capacity.taken(repo)
            admitted += 1
        reports[issue.number] = CandidateReport(repo, issue.number, issue.title, "queued", item.reason, rank=rank,
                                                score=item.score, run_id=run.id)
    return admitted, capacity


async def _assess(
    db: Database,
    settings: Settings,
    runner: Runner,
    moves: Transitions,
    repo: str,
    unassessed: Sequence[IssueView],
    fingerprints: dict[int, str],
    assessments: dict[int, Assessment],
) -> tuple[int, int, str]:
    """Ask the agent about ``unassessed`` in bounded prompts, storing each answer as it comes.

    Adds the answers to ``assessments``; returns (agent calls, prompt characters, the
    failure that stopped further prompts or ""). A failed prompt stops the repository's
    assessment for this pass: its issues stay unassessed and are asked about next time.
    """
    calls = chars = 0
    batches = plan_batches(repo, unassessed, max_candidates=settings.scheduler_prompt_candidates,
                           max_chars=settings.scheduler_prompt_chars)
    for batch in batches:
        numbers = [issue.number for issue in batch.candidates]
        chars += len(batch.prompt)
        try:
            outcome = await rank_candidates(
                runner, repo, batch.candidates, workdir=settings.state_dir / "scheduler",
                timeout=settings.agent_timeout_seconds, prompt=batch.prompt,
            )
        except (InvalidAgentOutput, RunnerError) as exc:
            calls += 2 if isinstance(exc, InvalidAgentOutput) else 1  # it is raised after the repair prompt
            raw = exc.raw if isinstance(exc, InvalidAgentOutput) else ""
            await db.run(moves.add_event, None, "scheduler_failed", repo=repo, error=str(exc), raw=raw[:60000],
                         issues=numbers)
            log.warning("scheduler agent failed; its candidates stay unassessed", repo=repo, error=str(exc))
            return calls, chars, str(exc)
        calls += outcome.calls
        found = assessments_from(outcome.ranking, {number: fingerprints[number] for number in numbers})
        await db.run(_store_assessments, db, repo, found.values())
        assessments.update(found)
        await db.run(
            moves.add_event, None, "scheduler_ranked", repo=repo, calls=outcome.calls, cost_usd=outcome.cost_usd,
            prompt_chars=len(batch.prompt), ranking=outcome.ranking.model_dump(),
        )
    return calls, chars, ""


async def _resolve_authors(github: AppClients, db: Database, settings: Settings, state: RepoState,
                           results: Sequence[tuple[IssueView, Verdict]]) -> bool:
    """Ask GitHub for the permission of authors whose issues failed only for want of it.

    Marks the issues of authors who pass in ``state``; True when any did. Stored answers
    younger than AUTHOR_PERMISSION_MAX_AGE_SECONDS are reused, so a known outsider costs
    no request; a failed look-up leaves the author untrusted.
    """
    if state.installation_id is None:
        return False
    policy = TrustPolicy.from_settings(settings)
    pending = sorted({
        issue.author for issue, verdict in results
        if verdict.gate == gates.UNTRUSTED_AUTHOR and policy.needs_lookup(Actor.from_login(issue.author))
    })[:MAX_AUTHOR_LOOKUPS_PER_PASS]
    if not pending:
        return False
    gh = github.client(state.installation_id)
    passed: set[str] = set()
    for author in pending:
        decision = await check_actor(gh, db, settings, state.repo, Actor.from_login(author),
                                     ttl=AUTHOR_PERMISSION_MAX_AGE_SECONDS)
        if decision.allowed:
            passed.add(author.lower())
    state.issues = [
        replace(issue, author_trusted=True) if issue.author.lower() in passed else issue for issue in state.issues
    ]
    return bool(passed)


async def _resolve_dependencies(github: AppClients, db: Database, state: RepoState,
                                results: Sequence[tuple[IssueView, Verdict]]) -> bool:
    """Look up dependencies of unknown state for issues that passed every gate before the dependency gate.

    Updates ``state``'s dependency states and errors; True when anything was learnt.
    """
    blocked = [issue for issue, verdict in results if verdict.gate == gates.DEPENDENCY
               and gates.UNKNOWN_STATE in verdict.reason]
    unknown = {
        ref for issue in blocked for ref in state.dependencies.get(issue.number, ())
        if ref != issue.ref and ref not in state.dependency_states and ref not in state.dependency_errors
    }
    if not unknown:
        return False
    answers = await look_up(github, db, unknown, needed_by=state.repo, installation_id=state.installation_id)
    for ref, known in answers.items():
        if known.state is not None:
            state.dependency_states[ref] = known.state
        elif known.error:
            state.dependency_errors[ref] = known.error
    return bool(answers)


# The long-running role ------------------------------------------------------------


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def run_scheduler(
    db: Database,
    settings: Settings,
    runner: Runner,
    *,
    stop: asyncio.Event,
    resync: Callable[[], Awaitable[None]] | None = None,
    poll_seconds: float = 0.25,
    on_pass: Callable[[list[CandidateReport]], None] | None = None,
    github: AppClients | None = None,
    clock: Callable[[], float] = now,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    runner_for: RunnerFactory | None = None,
) -> None:
    """Wake on dirty marks and freed slots, debounce each repository, schedule the due ones; resync periodically.

    A repository is due after ``SCHEDULER_DEBOUNCE_SECONDS`` of quiet or
    ``SCHEDULER_MAX_DELAY_SECONDS`` after its first unscheduled change, whichever
    comes first. Start-up and freed slots are debounced the same way and schedule
    every repository (:func:`decide_wake`). ``clock`` and ``sleep`` are injectable for tests.
    """
    debounce = Debounce(settings.scheduler_debounce_seconds, settings.scheduler_max_delay_seconds)
    _, marker = await db.run(_wake_signals, db)
    # Every repository is due at start-up and when a slot frees: (first, last) wake-up for "all".
    window: Window | None = (clock(), clock())
    last_resync: float | None = None
    while not stop.is_set():
        at = clock()
        marks, current = await db.run(_wake_signals, db)
        wake = decide_wake(marks, window, slot_freed=current != marker, at=at, debounce=debounce)
        marker, window = current, wake.window
        if wake.due:
            await db.run(_clear_dirty, db, {repo: float(marks[repo].get("last", 0.0)) for repo in wake.repos})
            try:
                schedulable = None if wake.whole else await db.run(_schedulable, db, wake.repos)
                reports = await schedule_once(db, settings, runner, github=github, runner_for=runner_for,
                                              repos=schedulable)
            except Exception as exc:  # keep the role alive; the next mark retries
                log.error("scheduling pass failed", error=str(exc), exc_info=True)
            else:
                if on_pass is not None:
                    on_pass(reports)
        if resync is not None and (last_resync is None or clock() - last_resync >= settings.resync_interval_seconds):
            last_resync = clock()
            try:
                await resync()
            except Exception as exc:  # noqa: BLE001 - the scheduler loop: a failed resync is logged, scheduling goes on
                log.warning("resync failed", error=str(exc))
        if sleep is not None:
            await sleep(poll_seconds)
        else:
            await _sleep_or_stop(stop, poll_seconds)


def _wake_signals(db: Database) -> tuple[dict[str, dict[str, float | str]], tuple[int, float]]:
    """The dirty marks and the finished-runs marker, in one read."""
    with db.read() as session:
        return dirty_repos(session), terminal_marker(session)


def _clear_dirty(db: Database, up_to: dict[str, float]) -> None:
    with db.begin() as session:
        for repo, last in up_to.items():
            clear_dirty(session, repo, up_to=last)


def _schedulable(db: Database, repos: Iterable[str]) -> list[str]:
    """The given repositories that have open issues and are not deactivated."""
    with db.read() as session:
        return sorted(set(repos) & set(scheduled_repos(session)))


def describe(report: CandidateReport) -> str:
    """One line per candidate for ``schedule-once`` (pure)."""
    place = f" rank {report.rank} score {report.score}" if report.rank is not None else ""
    return f"{report.repo}#{report.number} {report.verdict}{place}: {report.reason} — {report.title}"
