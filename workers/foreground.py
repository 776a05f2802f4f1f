"""Foreground delivery: ``agentz loop N`` and the interactive issue picker.

No receiver is needed: the repository's snapshots are refreshed from GitHub before
each scheduling pass, the gates and the Scheduler Agent pick the next issue, and the
issue is delivered through plan → develop → review → PR → CI like any worker would.
Interactively, the person at the terminal picks the issue, answers the Task Lead's
impact analysis, and watches the run to its pull request.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import select

from agentz_app.config import Settings
from agentz_app.domain.states import Status
from agentz_app.errors import ConfigError
from agentz_app.github.app import GitHubApp
from agentz_app.scheduling.resync import resync_repo
from agentz_app.scheduling.service import RunnerFactory, describe, schedule_once
from agentz_app.store import snapshots
from agentz_app.store.db import Database
from agentz_app.store.models import Run
from agentz_app.tui.candidates import Candidate, stored_candidates
from workers.pipeline import Consult, PipelineDeps
from workers.pool import deliver_issue

Echo = Callable[[str], None]


async def refresh_repository(github: GitHubApp, db: Database, repo: str) -> None:
    """Record the repository (default branch, installation) and resync its issues and PRs."""
    installation_id = await github.installation_for_repo(repo)
    gh = github.client(installation_id)
    repository = await gh.getitem(f"/repos/{repo}")
    await db.run(_store_repository, db, repository, installation_id)
    await resync_repo(gh, db, repo)


def _store_repository(db: Database, repository: Mapping[str, Any], installation_id: int) -> None:
    with db.begin() as session:
        snapshots.upsert_repository(session, repository, installation_id=installation_id)


def _next_queued(db: Database, repo: str, skip: set[str]) -> Run | None:
    with db.read() as session:
        runs = session.scalars(
            select(Run).where(Run.repo == repo, Run.status == str(Status.QUEUED)).order_by(Run.created_at)
        )
        return next((run for run in runs if run.id not in skip), None)


async def run_loop(deps: PipelineDeps, github: GitHubApp, runner_for: RunnerFactory, count: int, *, force: bool,
                   echo: Echo) -> list[Run]:
    """Deliver up to ``count`` issues of ``GITHUB_REPO``; returns the finished runs.

    ``deps`` (their progress echoes stage changes), the process's one ``github`` App and
    ``runner_for`` (a scheduler backend name → its runner) come from the composition root.
    """
    settings, db = deps.settings, deps.db
    repo = settings.github_repo
    if not repo:
        raise ConfigError("GITHUB_REPO", "required by `agentz loop`")
    settings.require_app()
    scheduler = runner_for(settings.backend_for("scheduler"))
    finished: list[Run] = []
    while len(finished) < count:
        await refresh_repository(github, db, repo)
        for report in await schedule_once(db, settings, scheduler, force=force, repos=[repo], github=github,
                                          runner_for=runner_for):
            echo(describe(report))
        run = await db.run(_next_queued, db, repo, {done.id for done in finished})
        if run is None:
            echo("no eligible issue left")
            break
        echo(f"delivering {repo}#{run.issue_number} ({len(finished) + 1}/{count})")
        finished.append(await deliver_issue(settings, repo, run.issue_number, echo=echo, deps=deps))
    return finished


async def load_candidates(github: GitHubApp, db: Database, settings: Settings) -> list[Candidate]:
    """The candidates of ``GITHUB_REPO``: from the snapshots, or read from GitHub when none are stored."""
    repo = _interactive_repo(settings)
    found = await db.run(stored_candidates, db, repo)
    if not found:
        await refresh_repository(github, db, repo)
        found = await db.run(stored_candidates, db, repo)
    return found


async def deliver_with_operator(deps: PipelineDeps, number: int, *, consult: Consult, echo: Echo,
                                ci_poll_seconds: float = 5.0) -> Run:
    """Deliver one issue of ``GITHUB_REPO``, asking ``consult`` about the Task Lead's impact analysis.

    ``deps`` come from the composition root; this delivery's stage changes go to ``echo``.
    """
    repo = _interactive_repo(deps.settings)
    delivery = dataclasses.replace(deps, consult=consult, progress=lambda run, status: echo(f"  {status}"))
    return await deliver_issue(deps.settings, repo, number, echo=echo, deps=delivery,
                               ci_poll_seconds=ci_poll_seconds)


def _interactive_repo(settings: Settings) -> str:
    if not settings.github_repo:
        raise ConfigError("GITHUB_REPO", "required by the interactive mode")
    settings.require_app()
    return settings.github_repo
