"""``agentz loop N``: schedule and deliver up to N issues one after another, in the foreground.

No receiver is needed: the repository's snapshots are refreshed from GitHub before
each scheduling pass, the gates and the Scheduler Agent pick the next issue, and the
issue is delivered through plan → develop → review → PR → CI like any worker would.
"""

from __future__ import annotations

from collections.abc import Callable

import aiohttp
from sqlalchemy import select

from agentz_app.config import Settings
from agentz_app.errors import ConfigError
from agentz_app.github.app import GitHubApp
from agentz_app.scheduling.resync import resync_repo
from agentz_app.scheduling.service import describe, schedule_once
from agentz_app.store import snapshots
from agentz_app.store.db import Database
from agentz_app.store.models import Run
from agentz_app.store.states import Status
from workers.pool import deliver_issue
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
            for report in await schedule_once(db, settings, runner, force=force, repos=[repo], github=github):
                echo(describe(report))
            run = _next_queued(db, repo, {done.id for done in finished})
            if run is None:
                echo("no eligible issue left")
                break
            echo(f"delivering {repo}#{run.issue_number} ({len(finished) + 1}/{count})")
            finished.append(await deliver_issue(settings, repo, run.issue_number, echo=echo, db=db))
    return finished
