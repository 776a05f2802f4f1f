"""The scheduler's service layer: gates → fingerprint → Scheduler Agent → enqueue.

:func:`schedule_once` evaluates every repository with open issues. The agent is
called for a repository only when its candidate fingerprint differs from the one
stored in ``kv`` with the last ranking; otherwise the stored ranking is reused, so
free slots are refilled without a call. :func:`run_scheduler` is the long-running
role: it wakes on dirty marks and on runs reaching a terminal status (a cheap DB
read every ``poll_seconds``, never a GitHub poll), debounces, and runs one pass.

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
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from agentz_app.config import Settings
from agentz_app.errors import InvalidAgentOutput, RunnerError
from agentz_app.ingress.permissions import Actor, TrustPolicy, check_actor, stored_decision
from agentz_app.logs import get_logger
from agentz_app.scheduling import gates
from agentz_app.scheduling.agent import RankedIssue, Ranking, rank_candidates
from agentz_app.scheduling.deps import IssueRef, parse_dependencies
from agentz_app.scheduling.fingerprint import candidate_fingerprint
from agentz_app.scheduling.gates import GateContext, IssueView, PullView, Verdict
from agentz_app.scheduling.signals import clear_dirty, dirty_repos
from agentz_app.store import trust
from agentz_app.store.db import Database
from agentz_app.store.models import IssueComment, IssueSnapshot, KeyValue, PullSnapshot, Repository, Run, now
from agentz_app.store.runs import RunQueue
from agentz_app.store.states import LIVE, TERMINAL, Status
from workers.runners.base import Runner

log = get_logger(__name__)

RANKING_PREFIX = "scheduler:ranking:"
RESYNC_PREFIX = "resync:"
STALE_AFTER_INTERVALS = 2.0
# An issue author's stored permission counts this long; then the next pass asks GitHub again.
AUTHOR_PERMISSION_MAX_AGE_SECONDS = 6 * 3600.0
MAX_AUTHOR_LOOKUPS_PER_PASS = 50


@dataclass(frozen=True)
class CandidateReport:
    """One issue's outcome in a scheduling pass (what ``schedule-once`` prints)."""

    repo: str
    number: int
    title: str
    verdict: str
    reason: str
    gate: str | None = None
    rank: int | None = None
    score: int | None = None
    run_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    stored: dict[str, Any] = field(default_factory=dict)


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
    row = session.get(KeyValue, RESYNC_PREFIX + repo)
    if row is None:
        return True  # webhook-fed snapshots only: nothing says they are stale
    ok_at = float(row.value.get("ok_at") or 0.0)
    failed_at = float(row.value.get("failed_at") or 0.0)
    return failed_at <= ok_at or at - ok_at <= STALE_AFTER_INTERVALS * settings.resync_interval_seconds


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
    wanted = {ref for issue in issues for ref in parse_dependencies([issue.body, *issue.comments], repo)}
    states: dict[IssueRef, str] = {}
    for dep_repo in {ref.repo for ref in wanted}:
        numbers = [ref.number for ref in wanted if ref.repo == dep_repo]
        for number, state in session.execute(
            select(IssueSnapshot.number, IssueSnapshot.state).where(
                IssueSnapshot.repo == dep_repo, IssueSnapshot.number.in_(numbers)
            )
        ):
            states[IssueRef(dep_repo, number)] = state
    installation_id = session.scalar(select(Repository.installation_id).where(Repository.full_name == repo))
    stored_row = session.get(KeyValue, RANKING_PREFIX + repo)
    return RepoState(
        repo=repo,
        installation_id=installation_id,
        issues=issues,
        pulls=pulls,
        live={ref: status for ref, status in live.items() if ref.repo == repo},
        last_runs=last_finished_runs(session, repo),
        dependency_states=states,
        fresh=snapshot_fresh(session, repo, settings, at=now()),
        stored=dict(stored_row.value) if stored_row is not None else {},
    )


# Deciding (pure) ------------------------------------------------------------------


def gate_context(settings: Settings, state: RepoState) -> GateContext:
    return GateContext.from_settings(
        settings,
        live_runs=state.live,
        last_runs=state.last_runs,
        dependency_states=state.dependency_states,
        open_pulls=state.pulls,
        snapshot_fresh=state.fresh,
    )


def admission_order(ranking: Ranking, *, force: bool) -> list[RankedIssue]:
    """Ranked issues best first; with ``force`` high-risk rejections follow at score 0."""
    order = ranking.ordered()
    if force:
        order += [
            RankedIssue(number=item.number, score=0, reason=f"admitted by --force ({item.reason})")
            for item in ranking.rejected
            if item.kind == "high_risk"
        ]
    return order


def gated_verdict(verdict: Verdict, live_status: str | None) -> tuple[str, str]:
    """The stored verdict for an issue that did not pass the gates."""
    if verdict.gate == gates.ACTIVE_RUN and live_status is not None:
        return ("queued" if live_status == Status.QUEUED else "ran"), verdict.reason
    return verdict.label, verdict.reason


# Writing --------------------------------------------------------------------------


def _store_ranking(db: Database, repo: str, value: dict[str, Any]) -> None:
    with db.begin() as session:
        row = session.get(KeyValue, RANKING_PREFIX + repo)
        if row is None:
            session.add(KeyValue(key=RANKING_PREFIX + repo, value=value, updated_at=now()))
        else:
            row.value = value
            row.updated_at = now()


def _record_verdicts(db: Database, repo: str, reports: Iterable[CandidateReport]) -> None:
    by_number = {report.number: report for report in reports}
    if not by_number:
        return
    stamp = now()
    with db.begin() as session:
        for row in session.scalars(
            select(IssueSnapshot).where(IssueSnapshot.repo == repo, IssueSnapshot.number.in_(list(by_number)))
        ):
            report = by_number[row.number]
            if row.verdict != report.verdict or row.verdict_reason != report.reason:
                row.verdict = report.verdict
                row.verdict_reason = report.reason
                row.verdict_at = stamp


# The pass -------------------------------------------------------------------------


@dataclass
class _Slots:
    free_global: int
    per_repo_limit: int
    live_per_repo: dict[str, int]

    def free_for(self, repo: str) -> int:
        return max(0, min(self.free_global, self.per_repo_limit - self.live_per_repo.get(repo, 0)))

    def take(self, repo: str) -> None:
        self.free_global -= 1
        self.live_per_repo[repo] = self.live_per_repo.get(repo, 0) + 1


async def schedule_once(
    db: Database, settings: Settings, runner: Runner, *, force: bool = False, repos: Iterable[str] | None = None,
    github: Any | None = None,
) -> list[CandidateReport]:
    """One scheduling pass over every repository (or ``repos``); returns each issue's outcome.

    ``github`` (the App client factory) lets the pass look up the permission of issue
    authors it does not know yet (``SCHEDULER_TRUST=maintainers``); without it, unknown
    authors do not pass.
    """
    queue = RunQueue(db, lease_seconds=settings.lease_seconds)
    with db.read() as session:
        live = live_runs(session)
        names = sorted(set(repos)) if repos is not None else scheduled_repos(session)
        states = [load_repo_state(session, name, settings, live=live) for name in names]
    per_repo: dict[str, int] = defaultdict(int)
    for ref in live:
        per_repo[ref.repo] += 1
    slots = _Slots(settings.max_parallel_tasks - len(live), settings.per_repo_limit, dict(per_repo))
    reports: list[CandidateReport] = []
    for state in states:
        reports += await _schedule_repo(db, settings, runner, queue, state, slots, force=force, github=github)
    return reports


async def _schedule_repo(
    db: Database,
    settings: Settings,
    runner: Runner,
    queue: RunQueue,
    state: RepoState,
    slots: _Slots,
    *,
    force: bool,
    github: Any | None = None,
) -> list[CandidateReport]:
    repo = state.repo
    ctx = gate_context(settings, state)
    results = gates.evaluate_all(state.issues, ctx)
    if github is not None and await _resolve_authors(github, db, settings, state, results):
        results = gates.evaluate_all(state.issues, ctx)
    reports: dict[int, CandidateReport] = {}
    candidates: list[IssueView] = []
    for issue, verdict in results:
        if verdict.passed:
            candidates.append(issue)
            continue
        if issue.number in reports:
            continue
        label, reason = gated_verdict(verdict, state.live.get(issue.ref))
        reports[issue.number] = CandidateReport(repo, issue.number, issue.title, label, reason, gate=verdict.gate)
    fingerprint = candidate_fingerprint(candidates, state.pulls, state.live)
    ranking = _stored_ranking(state.stored, fingerprint)
    calls = 0
    if candidates and ranking is None:
        try:
            outcome = await rank_candidates(
                runner,
                repo,
                candidates,
                workdir=settings.state_dir / "scheduler",
                timeout=settings.agent_timeout_seconds,
            )
        except (InvalidAgentOutput, RunnerError) as exc:
            raw = exc.raw if isinstance(exc, InvalidAgentOutput) else ""
            queue.add_event(None, "scheduler_failed", repo=repo, error=str(exc), raw=raw[:60000])
            log.warning("scheduler agent failed; nothing enqueued", repo=repo, error=str(exc))
            for issue in candidates:
                reports[issue.number] = CandidateReport(
                    repo, issue.number, issue.title, "unranked", f"ranking failed: {exc}"
                )
            _record_verdicts(db, repo, reports.values())
            return list(reports.values())
        ranking, calls = outcome.ranking, outcome.calls
        queue.add_event(
            None, "scheduler_ranked", repo=repo, fingerprint=fingerprint, calls=calls, cost_usd=outcome.cost_usd,
            ranking=ranking.model_dump(),
        )
    ranking = ranking or Ranking(ranking=[])
    by_number = {issue.number: issue for issue in candidates}
    admitted: set[int] = set()
    limit = settings.scheduler_batch_size
    order = [item for item in admission_order(ranking, force=force) if item.number in by_number]
    for rank, item in enumerate(order, start=1):
        issue = by_number[item.number]
        if len(admitted) < limit and slots.free_for(repo) > 0:
            run, created = queue.enqueue(
                repo,
                issue.number,
                installation_id=state.installation_id,
                title=issue.title,
                force=force,
                requested_by="scheduler",
                reason=f"ranked #{rank} (score {item.score}): {item.reason}",
                issue_updated_at=issue.updated_at,
            )
            if created:
                slots.take(repo)
                admitted.add(issue.number)
            reports[issue.number] = CandidateReport(
                repo, issue.number, issue.title, "queued", item.reason, rank=rank, score=item.score, run_id=run.id
            )
        else:
            why = "batch size reached" if len(admitted) >= limit else "no free slot"
            reports[issue.number] = CandidateReport(
                repo, issue.number, issue.title, "ranked", f"{why}; {item.reason}", rank=rank, score=item.score
            )
    for rejected in ranking.rejected:
        if rejected.number in by_number and rejected.number not in reports:
            issue = by_number[rejected.number]
            reports[issue.number] = CandidateReport(
                repo, issue.number, issue.title, f"rejected:{rejected.kind}", rejected.reason
            )
    for issue in candidates:
        if issue.number not in reports:
            reports[issue.number] = CandidateReport(
                repo, issue.number, issue.title, "unranked", "not ranked by the scheduler agent"
            )
    # Store the fingerprint of the state *after* admission, so an unchanged backlog
    # next time matches it and costs no call.
    remaining = [issue for issue in candidates if issue.number not in admitted]
    now_live = set(state.live) | {IssueRef(repo, number) for number in admitted}
    _store_ranking(
        db,
        repo,
        {
            "fingerprint": candidate_fingerprint(remaining, state.pulls, now_live),
            "ranking": ranking.model_dump(),
            "at": now(),
        },
    )
    _record_verdicts(db, repo, reports.values())
    if calls:
        log.info("scheduler ranked candidates", repo=repo, candidates=len(candidates), admitted=len(admitted))
    return sorted(reports.values(), key=lambda report: report.number)


async def _resolve_authors(github: Any, db: Database, settings: Settings, state: RepoState,
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


def _stored_ranking(stored: dict[str, Any], fingerprint: str) -> Ranking | None:
    if stored.get("fingerprint") != fingerprint:
        return None
    try:
        return Ranking.model_validate(stored.get("ranking") or {"ranking": []})
    except ValueError:
        return None


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
    github: Any | None = None,
) -> None:
    """Wake on dirty marks and freed slots, debounce, schedule; resync periodically."""
    debounce = settings.scheduler_debounce_seconds
    with db.read() as session:
        marker = terminal_marker(session)
    wake_at: float | None = now()  # one pass at start-up; the fingerprint keeps it cheap
    last_resync = 0.0
    while not stop.is_set():
        with db.read() as session:
            marks = dirty_repos(session)
            current = terminal_marker(session)
        if current != marker:
            marker = current
            wake_at = now() if wake_at is None else max(wake_at, now())
        latest = max((float(mark.get("last", 0.0)) for mark in marks.values()), default=None)
        if latest is not None:
            wake_at = latest if wake_at is None else max(wake_at, latest)
        if wake_at is not None and now() - wake_at >= debounce:
            with db.begin() as session:
                for repo, mark in marks.items():
                    clear_dirty(session, repo, up_to=float(mark.get("last", 0.0)))
            wake_at = None
            try:
                reports = await schedule_once(db, settings, runner, github=github)
            except Exception as exc:  # keep the role alive; the next mark retries
                log.error("scheduling pass failed", error=str(exc), exc_info=True)
            else:
                if on_pass is not None:
                    on_pass(reports)
        if resync is not None and now() - last_resync >= settings.resync_interval_seconds:
            last_resync = now()
            try:
                await resync()
            except Exception as exc:
                log.warning("resync failed", error=str(exc))
        await _sleep_or_stop(stop, poll_seconds)


# Entry points for the command line ------------------------------------------------


def _runner_for(settings: Settings) -> Runner:
    from workers.runners.registry import get_runner

    return get_runner(settings.backend_for("scheduler"), settings)


async def run_schedule_once(settings: Settings, *, force: bool = False) -> list[CandidateReport]:
    """Open the database, run one scheduling pass with the configured backend, close."""
    import aiohttp

    from agentz_app.bootstrap import open_database
    from agentz_app.ingress.inbox import github_app_for

    db = open_database(settings)
    try:
        async with aiohttp.ClientSession() as http:
            return await schedule_once(db, settings, _runner_for(settings), force=force,
                                       github=github_app_for(settings, http))
    finally:
        db.dispose()


async def scheduler_role(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """The long-running scheduler: event-driven passes plus periodic resync when GitHub is configured."""
    import aiohttp

    from agentz_app.bootstrap import open_database
    from agentz_app.ingress.inbox import github_app_for
    from agentz_app.scheduling.resync import resync_all

    stop = stop or asyncio.Event()
    db = open_database(settings)
    try:
        async with aiohttp.ClientSession() as http:
            github = github_app_for(settings, http)

            async def resync() -> None:
                await resync_all(github, db, settings)

            log.info("scheduler started", backend=settings.backend_for("scheduler"), resync=github is not None)
            await run_scheduler(
                db, settings, _runner_for(settings), stop=stop, resync=resync if github is not None else None,
                github=github,
            )
    finally:
        db.dispose()


def describe(report: CandidateReport) -> str:
    """One line per candidate for ``schedule-once`` (pure)."""
    place = f" rank {report.rank} score {report.score}" if report.rank is not None else ""
    return f"{report.repo}#{report.number} {report.verdict}{place}: {report.reason} — {report.title}"
