"""The composition root: what each process role is built from, made once and handed down.

Every role (receiver and inbox, scheduler, reconciler, planner and worker, foreground
delivery and the interactive picker, the supervisor's dashboard) starts here. Per
process it builds the settings and logging, the database, one HTTP session with one
:class:`GitHubApp` (sharing installation tokens, per-installation pacing and the ETag
cache), the runner registry and the clock; the pipeline's ``Worktrees`` always get the
App's installation token provider. Handlers and services receive these instead of
building their own. This module and :mod:`agentz_app.cli` are the only parts of
``agentz_app`` that import ``workers``.

Every role process imports this module, and the receiver runs on what it imports at the
top: the web server, the inbox's handlers, the store and the GitHub client. Everything else
is imported by the role function that runs it: the workers' pipeline and the runner registry,
the scheduler, the reconciler and the supervisor (about 4 MB the receiver would otherwise
carry), the Textual screens and the demo's fake GitHub (about 10 MB).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from agentz_app import web
from agentz_app.config import Settings
from agentz_app.domain.runner import Runner
from agentz_app.errors import ConfigError
from agentz_app.github.app import GitHubApp
from agentz_app.ingress.inbox import OpenGitHub
from agentz_app.logs import configure_logging, get_logger
from agentz_app.metrics import process_github_metrics
from agentz_app.secrets import configured_secret_values
from agentz_app.store.db import Database, check_sqlite_path
from agentz_app.store.migrate import migrate
from agentz_app.store.models import Run

if TYPE_CHECKING:
    from agentz_app.demo.runner import HostProbes
    from agentz_app.domain.scheduling import CandidateReport
    from agentz_app.supervisor import Supervisor
    from agentz_app.tui.candidates import Candidate
    from agentz_app.tui.pick import IssuePicker
    from workers.pipeline import Consult, PipelineDeps, Progress
    from workers.pool import Outcome

Clock = Callable[[], float]
Echo = Callable[[str], None]
# Builds the runner for a backend name (``claude``, ``codex``, ``opencode``, ``scripted``).
RunnerFactory = Callable[[str, Settings], Runner]

log = get_logger("agentz.bootstrap")


def load_settings(env_file: str | Path | None = ".env") -> Settings:
    """Settings from env/.env with logging configured to match (and to redact the configured secrets)."""
    settings = Settings.load(env_file)
    configure_logging(settings.log_format, settings.log_level, secret_values=configured_secret_values(settings))
    return settings


def open_database(settings: Settings, *, run_migrations: bool = True, create: bool = True) -> Database:
    """Open the configured database and bring its schema up to date.

    ``create=False`` (read-only commands) never creates a SQLite file; with ``create=True`` its
    folder must exist unless it is STATE_DIR. An unreachable database raises DatabaseUnavailable.
    """
    check_sqlite_path(settings.database_url, create=create, creatable=settings.state_dir)
    db = Database.from_url(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    try:
        db.connect_or_raise()
        if run_migrations:
            migrate(db)
    except BaseException:
        db.dispose()
        raise
    return db


def app_configured(settings: Settings) -> bool:
    """True when the GitHub App's id and private key are set."""
    return settings.github_app_id is not None and (
        settings.github_private_key is not None or settings.github_private_key_path is not None
    )


# Services -----------------------------------------------------------------------


@dataclass(frozen=True)
class Services:
    """What one process role is built from; made once per process by :func:`open_services`."""

    settings: Settings
    db: Database
    http: aiohttp.ClientSession
    github: GitHubApp
    clock: Clock
    runners: RunnerFactory

    @property
    def configured_github(self) -> GitHubApp | None:
        """The GitHub App, or None when it is not configured (roles that also work without it)."""
        return self.github if app_configured(self.settings) else None

    def runner(self, role: str) -> Runner:
        """The runner of ``role``'s configured backend."""
        return self.runner_for(self.settings.backend_for(role))

    def runner_for(self, backend: str) -> Runner:
        """The runner of ``backend`` (a repository's ``.github/agent-z.yml`` may choose another)."""
        return self.runners(backend, self.settings)

    def pipeline(self, *, progress: Progress | None = None) -> PipelineDeps:
        """The pipeline's dependencies over this process's App (its Worktrees get the App's tokens)."""
        from workers import pool

        return pool.build_deps(self.settings, self.db, self.github, progress=progress, clock=self.clock)


def registered_runner(backend: str, settings: Settings) -> Runner:
    """The runner registry's runner for ``backend`` (imported on first use: the receiver runs no agent)."""
    from workers.runners.registry import get_runner

    return get_runner(backend, settings)


@asynccontextmanager
async def open_services(settings: Settings, db: Database, *, clock: Clock = time.time,
                        runners: RunnerFactory = registered_runner) -> AsyncIterator[Services]:
    """Open this process's one HTTP session and GitHub App over ``db``; close the session on exit.

    Every GitHub response is counted in the process's metrics (``/metrics``)."""
    async with aiohttp.ClientSession() as http:
        github = GitHubApp(settings, http, clock=clock, on_response=process_github_metrics().on_response)
        yield Services(settings=settings, db=db, http=http, github=github, clock=clock, runners=runners)


def github_opener(settings: Settings, db: Database) -> OpenGitHub:
    """For the receiver's inbox: opens the process's services when processing starts, on the receiver's loop."""

    @asynccontextmanager
    async def open_github() -> AsyncIterator[GitHubApp | None]:
        async with open_services(settings, db) as services:
            yield services.configured_github

    return open_github


# Roles --------------------------------------------------------------------------


def run_receiver(settings: Settings, *, host: str | None = None, port: int | None = None) -> None:
    """The receiver role: store webhooks and work the inbox with the process's GitHub App."""
    db = open_database(settings)
    try:
        web.run_receiver(settings, db, open_github=github_opener(settings, db), host=host, port=port)
    finally:
        db.dispose()


async def run_scheduler(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """The scheduler role: event-driven passes plus periodic resync when GitHub is configured."""
    from agentz_app.scheduling import service as scheduling
    from agentz_app.scheduling.resync import resync_all

    db = await asyncio.to_thread(open_database, settings)  # connects and migrates
    try:
        async with open_services(settings, db) as services:
            github = services.configured_github

            async def resync() -> None:
                if github is not None:
                    await resync_all(github, db, settings)

            log.info("scheduler started", backend=settings.backend_for("scheduler"), resync=github is not None)
            await scheduling.run_scheduler(
                db, settings, services.runner("scheduler"), stop=stop or asyncio.Event(),
                resync=resync if github is not None else None, github=github, runner_for=services.runner_for,
                clock=services.clock,
            )
    finally:
        db.dispose()


async def run_schedule_once(settings: Settings, *, force: bool = False) -> list[CandidateReport]:
    """One scheduling pass with the configured backend."""
    from agentz_app.scheduling import service as scheduling

    db = await asyncio.to_thread(open_database, settings)  # connects and migrates
    try:
        async with open_services(settings, db) as services:
            return await scheduling.schedule_once(db, settings, services.runner("scheduler"), force=force,
                                                  github=services.configured_github, runner_for=services.runner_for)
    finally:
        db.dispose()


def run_reconciler(settings: Settings) -> None:
    """The reconciler role (database work only: no GitHub client)."""
    from agentz_app.reconciler import run_reconciler as reconcile_forever

    db = open_database(settings)
    try:
        reconcile_forever(settings, db=db)
    finally:
        db.dispose()


async def run_role(settings: Settings, role: str, *, once: bool = False) -> list[Outcome]:
    """The planner or worker role (``once``: at most one claim)."""
    from workers import pool

    db = await asyncio.to_thread(open_database, settings)  # connects and migrates
    try:
        async with open_services(settings, db) as services:
            return await pool.run_role(settings, role, deps=services.pipeline(), once=once)
    finally:
        db.dispose()


def _stage_echo(echo: Echo) -> Progress:
    return lambda run, status: echo(f"  {status}")


async def deliver_issue(settings: Settings, repo: str, number: int, *, echo: Echo) -> Run:
    """Deliver one issue in the foreground, echoing each stage."""
    from workers import pool

    db = await asyncio.to_thread(open_database, settings)  # connects and migrates
    try:
        async with open_services(settings, db) as services:
            deps = services.pipeline(progress=_stage_echo(echo))
            return await pool.deliver_issue(settings, repo, number, echo=echo, deps=deps)
    finally:
        db.dispose()


async def run_loop(settings: Settings, db: Database, count: int, *, force: bool, echo: Echo) -> list[Run]:
    """``agentz loop``: schedule and deliver up to ``count`` issues of ``GITHUB_REPO`` in the foreground."""
    from workers import foreground

    async with open_services(settings, db) as services:
        return await foreground.run_loop(services.pipeline(progress=_stage_echo(echo)), services.github,
                                         services.runner_for, count, force=force, echo=echo)


def picker_for(services: Services, *, ci_poll_seconds: float = 5.0) -> IssuePicker:
    """The interactive picker over ``GITHUB_REPO`` with this process's GitHub App and agent backends."""
    from agentz_app.tui.data import web_base_for
    from agentz_app.tui.pick import IssuePicker  # Textual: only a terminal session needs it
    from workers import foreground

    settings = services.settings
    repo = settings.github_repo
    if not repo:
        raise ConfigError("GITHUB_REPO", "required by the interactive mode")
    deps = services.pipeline()

    async def load() -> list[Candidate]:
        return await foreground.load_candidates(services.github, services.db, settings)

    async def deliver(number: int, consult: Consult, echo: Echo) -> Run:
        return await foreground.deliver_with_operator(deps, number, consult=consult, echo=echo,
                                                      ci_poll_seconds=ci_poll_seconds)

    return IssuePicker(repo=repo, load=load, deliver=deliver, web_base=web_base_for(settings.github_api_url))


def run_picker(settings: Settings, db: Database) -> Run | None:
    """``agentz`` on a terminal: run the picker until the operator quits; returns the last run."""

    async def pick() -> Run | None:
        async with open_services(settings, db) as services:
            app = picker_for(services)
            await app.run_async()
            return app.outcome

    return asyncio.run(pick())


def run_serve(settings: Settings, db: Database, *, workers: int | None = None, tui: bool = False,
              env_file: str | None = None, web_base: str | None = None) -> None:
    """``agentz serve``: supervise every role; with ``tui`` the dashboard runs in-process."""
    from agentz_app import supervisor as supervisor_service
    from agentz_app.tui.app import supervisor_dashboard  # Textual: only a terminal session needs it

    def dashboard(supervisor: Supervisor) -> Any:
        return supervisor_dashboard(supervisor, db, settings, web_base=web_base)

    supervisor_service.run_serve(settings, db, workers=workers, dashboard=dashboard if tui else None,
                                 env_file=env_file)


def host_probes() -> HostProbes:
    """The demo's checks of this host: the agent CLI is installed, bubblewrap works."""
    from agentz_app.demo.runner import HostProbes  # with the fake GitHub and model: only the demo needs them
    from workers.runners.cli import find_binary
    from workers.sandbox import bwrap_works

    return HostProbes(find_cli=find_binary, sandbox_works=bwrap_works)
