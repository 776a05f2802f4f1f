"""Foreground delivery: ``agentz loop N`` and the interactive issue picker.

No receiver is needed: the repository's snapshots are refreshed from GitHub before
each scheduling pass, the gates and the Scheduler Agent pick the next issue, and the
issue is delivered through plan → develop → review → PR → CI like any worker would.
Interactively, the person at the terminal picks the issue, answers the Task Lead's
impact analysis, and watches the run to its pull request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from sqlalchemy import select

from agentz_app.config import Settings
from agentz_app.domain.states import Status
from agentz_app.errors import ConfigError
from agentz_app.github.app import GitHubApp
from agentz_app.scheduling.resync import resync_repo
from agentz_app.scheduling.service import describe, schedule_once
from agentz_app.store import snapshots
from agentz_app.store.db import Database
from agentz_app.store.models import IssueAssessment, IssueSnapshot, Run
from workers.pipeline import Consult
from workers.pool import build_deps, deliver_issue
from workers.runners.registry import get_runner

Echo = Callable[[str], None]


async def refresh_repository(github: GitHubApp, db: Database, repo: str) -> None:
    """Record the repository (default branch, installation) and resync its issues and PRs."""
    installation_id = await github.installation_for_repo(repo)
    gh = github.client(installation_id)
    repository = await gh.getitem(f"/repos/{repo}")
    with db.begin() as session:
        snapshots.upsert_repository(session, repository, installation_id=installation_id)
    await resync_repo(gh, db, repo)


def _next_queued(db: Database, repo: str, skip: set[str]) -> Run | None:
    with db.read() as session:
        runs = session.scalars(
            select(Run).where(Run.repo == repo, Run.status == str(Status.QUEUED)).order_by(Run.created_at)
        )
        return next((run for run in runs if run.id not in skip), None)


async def run_loop(settings: Settings, db: Database, count: int, *, force: bool, echo: Echo) -> list[Run]:
    """Deliver up to ``count`` issues of ``GITHUB_REPO``; returns the finished runs."""
    repo = settings.github_repo
    if not repo:
        raise ConfigError("GITHUB_REPO", "required by `agentz loop`")
    settings.require_app()
    runner = get_runner(settings.backend_for("scheduler"), settings)
    finished: list[Run] = []
    async with aiohttp.ClientSession() as http:
        github = GitHubApp(settings, http)
        while len(finished) < count:
            await refresh_repository(github, db, repo)
            for report in await schedule_once(db, settings, runner, force=force, repos=[repo], github=github,
                                              runner_for=lambda backend: get_runner(backend, settings)):
                echo(describe(report))
            run = _next_queued(db, repo, {done.id for done in finished})
            if run is None:
                echo("no eligible issue left")
                break
            echo(f"delivering {repo}#{run.issue_number} ({len(finished) + 1}/{count})")
            finished.append(await deliver_issue(settings, repo, run.issue_number, echo=echo, db=db))
    return finished


@dataclass(frozen=True)
class Candidate:
    """An open issue as the picker lists it: the gates' verdict and the Scheduler Agent's word."""

    number: int
    title: str
    verdict: str
    verdict_reason: str
    score: int | None
    reason: str


def stored_candidates(db: Database, repo: str) -> list[Candidate]:
    """Open issues of ``repo`` from the snapshots, best Scheduler Agent score first."""
    with db.read() as session:
        issues = session.scalars(
            select(IssueSnapshot).where(IssueSnapshot.repo == repo, IssueSnapshot.state == "open",
                                        IssueSnapshot.is_pull_request.is_(False))
        ).all()
        assessed = {a.number: a for a in session.scalars(select(IssueAssessment).where(IssueAssessment.repo == repo))}
        found = [
            Candidate(
                number=issue.number, title=issue.title, verdict=issue.verdict or "not gated yet",
                verdict_reason=issue.verdict_reason or "",
                score=assessed[issue.number].score if issue.number in assessed else None,
                reason=assessed[issue.number].reason if issue.number in assessed else "",
            )
            for issue in issues
        ]
    return sorted(found, key=lambda c: (c.score is None, -(c.score or 0), c.number))


async def load_candidates(settings: Settings, db: Database, http: aiohttp.ClientSession) -> list[Candidate]:
    """The candidates of ``GITHUB_REPO``: from the snapshots, or read from GitHub when none are stored."""
    repo = _interactive_repo(settings)
    found = stored_candidates(db, repo)
    if not found:
        await refresh_repository(GitHubApp(settings, http), db, repo)
        found = stored_candidates(db, repo)
    return found


async def deliver_with_operator(settings: Settings, db: Database, http: aiohttp.ClientSession, number: int, *,
                                consult: Consult, echo: Echo, ci_poll_seconds: float = 5.0) -> Run:
    """Deliver one issue of ``GITHUB_REPO``, asking ``consult`` about the Task Lead's impact analysis."""
    repo = _interactive_repo(settings)
    deps = build_deps(settings, db, http, progress=lambda run, status: echo(f"  {status}"))
    deps.consult = consult
    return await deliver_issue(settings, repo, number, echo=echo, db=db, deps=deps, ci_poll_seconds=ci_poll_seconds)


def _interactive_repo(settings: Settings) -> str:
    if not settings.github_repo:
        raise ConfigError("GITHUB_REPO", "required by the interactive mode")
    settings.require_app()
    return settings.github_repo
