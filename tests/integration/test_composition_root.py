"""The composition root: each process role builds one HTTP session and one GitHub App and hands them down."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from gidgethub import routing

from agentz_app import bootstrap
from agentz_app.config import Settings
from agentz_app.demo.runner import Demo, DemoOptions, HostProbes
from agentz_app.errors import RunnerError
from agentz_app.github.app import GitHubApp
from agentz_app.ingress import checks, installations, routers, runs, snapshots, triggers
from agentz_app.ingress.inbox import InboxProcessor
from agentz_app.metrics import process_github_metrics
from agentz_app.store.db import Database
from agentz_app.store.models import Repository, Run
from workers import pool
from workers.pipeline import PipelineDeps


class Built:
    """Counts the GitHub Apps and HTTP sessions built anywhere in the process."""

    def __init__(self) -> None:
        self.apps: list[GitHubApp] = []
        self.sessions = 0
        self._lock = threading.Lock()

    def app(self, app: GitHubApp) -> None:
        with self._lock:
            self.apps.append(app)

    def session(self) -> None:
        with self._lock:
            self.sessions += 1


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch) -> Built:
    seen = Built()
    app_init = GitHubApp.__init__
    session_init = aiohttp.ClientSession.__init__

    def count_app(self: GitHubApp, *args: Any, **kwargs: Any) -> None:
        app_init(self, *args, **kwargs)
        seen.app(self)

    def count_session(self: aiohttp.ClientSession, *args: Any, **kwargs: Any) -> None:
        session_init(self, *args, **kwargs)
        seen.session()

    monkeypatch.setattr(GitHubApp, "__init__", count_app)
    monkeypatch.setattr(aiohttp.ClientSession, "__init__", count_session)
    return seen


@pytest.fixture
def app_settings(settings: Settings, tmp_path: Path) -> Settings:
    key = tmp_path / "app.pem"
    key.write_text("not read unless GitHub is called")
    return settings.model_copy(update={"github_private_key_path": key})


@pytest.mark.parametrize("role", ["planner", "worker"])
async def test_a_pool_role_builds_one_session_and_one_app(built: Built, app_settings: Settings, role: str) -> None:
    assert await bootstrap.run_role(app_settings, role, once=True) == []
    assert (built.sessions, len(built.apps)) == (1, 1)


async def test_one_scheduling_pass_builds_one_session_and_one_app(built: Built, app_settings: Settings) -> None:
    assert await bootstrap.run_schedule_once(app_settings) == []
    assert (built.sessions, len(built.apps)) == (1, 1)


async def test_the_scheduler_role_builds_one_session_and_one_app(built: Built, app_settings: Settings) -> None:
    stop = asyncio.Event()
    stop.set()
    await bootstrap.run_scheduler(app_settings, stop=stop)
    assert (built.sessions, len(built.apps)) == (1, 1)


async def test_the_receivers_inbox_builds_one_session_and_one_app(
    built: Built, app_settings: Settings, sqlite_db: Database
) -> None:
    handed: list[Any] = []

    opener = bootstrap.github_opener(app_settings, sqlite_db)

    def recording_opener() -> Any:
        opened = opener()

        class Recording:
            async def __aenter__(self) -> Any:
                github = await opened.__aenter__()
                handed.append(github)
                return github

            async def __aexit__(self, *exc: Any) -> Any:
                return await opened.__aexit__(*exc)

        return Recording()

    processor = InboxProcessor(sqlite_db, app_settings, poll_seconds=60, open_github=recording_opener)
    processor.start()
    await processor.stop()
    assert (built.sessions, len(built.apps)) == (1, 1)
    assert handed == built.apps  # the handlers' clients come from that one App


def test_without_app_credentials_the_inbox_processes_without_github(settings: Settings, sqlite_db: Database) -> None:
    async def open_and_read() -> Any:
        async with bootstrap.github_opener(settings.model_copy(update={"github_app_id": None}), sqlite_db)() as github:
            return github

    assert asyncio.run(open_and_read()) is None


async def test_the_picker_uses_the_roles_app_and_session(
    built: Built, app_settings: Settings, sqlite_db: Database
) -> None:
    async with bootstrap.open_services(app_settings.model_copy(update={"github_repo": "acme/app"}),
                                       sqlite_db) as services:
        bootstrap.picker_for(services)
        services.pipeline()
    assert (built.sessions, len(built.apps)) == (1, 1)


async def test_the_pipelines_github_and_git_tokens_come_from_the_roles_one_app(
    app_settings: Settings, sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with bootstrap.open_services(app_settings, sqlite_db) as services:
        requested: list[int] = []

        async def token(installation_id: int) -> str:
            requested.append(installation_id)
            return f"token-{installation_id}"

        monkeypatch.setattr(services.github, "installation_token", token)
        deps = services.pipeline()
        run = Run(id="r1", repo="acme/app", issue_number=1, installation_id=7)
        client = await deps.github(run)
        # The role's one session, ETag cache and installation pacer.
        assert client._session is services.http
        assert client._etags is services.github.etags
        assert client._pacer is services.github.client(7)._pacer
        assert client.installation_id == 7
        with sqlite_db.begin() as session:
            session.add(Repository(id=70, full_name="acme/app", installation_id=7))
        assert await deps.worktrees._token_provider("acme/app") == "token-7"
        assert requested == [7]


async def test_the_workers_wake_up_path_cleans_up_with_worktrees_that_push_with_the_installation_token(
    app_settings: Settings, sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A closed pull request's clean-up (deleting the checkpoint ref with git) runs on the worker's
    wake-up loop: it must get the role's Worktrees with the App's token, like a worker's push."""
    acted_with: list[PipelineDeps] = []

    async def wake_forever(deps: PipelineDeps, owner: str, stop: asyncio.Event, **_: Any) -> None:
        acted_with.append(deps)
        stop.set()

    monkeypatch.setattr(pool, "wake_forever", wake_forever)
    async with bootstrap.open_services(app_settings, sqlite_db) as services:

        async def token(installation_id: int) -> str:
            return f"token-{installation_id}"

        monkeypatch.setattr(services.github, "installation_token", token)
        with sqlite_db.begin() as session:
            session.add(Repository(id=90, full_name="acme/app", installation_id=9))
        deps = services.pipeline()
        await asyncio.wait_for(pool.run_worker(app_settings, deps=deps, stop=asyncio.Event()), 30)
    assert acted_with == [deps]
    assert await acted_with[0].worktrees._token_provider("acme/app") == "token-9"


def test_every_feature_router_is_imported_directly() -> None:
    features = (installations, snapshots, checks, triggers, runs)
    assert routers.feature_routers() == [feature.router for feature in features]
    assert all(isinstance(router, routing.Router) for router in routers.feature_routers())


def test_the_demo_warns_and_runs_agents_unconfined_when_the_hosts_sandbox_does_not_work(tmp_path: Path) -> None:
    said: list[str] = []
    probes = HostProbes(find_cli=lambda backend, environ: None, sandbox_works=lambda: False)
    demo = Demo(DemoOptions(workspace=tmp_path / "demo"), said.append, probes=probes)
    assert demo._sandbox_env() == {"AGENT_SANDBOX": "none"}
    assert any("bubblewrap is not usable" in line for line in said)


def test_the_command_lines_demo_probes_the_real_host() -> None:
    probes = bootstrap.host_probes()
    with pytest.raises(RunnerError, match="not found"):
        probes.find_cli("no-such-agent-cli", {"PATH": "/nonexistent"})


async def test_every_github_response_of_a_role_is_counted_in_its_process_metrics(
    app_settings: Settings, sqlite_db: Database
) -> None:
    counted = process_github_metrics()
    before = counted.requests.labels("GET", "200")._value.get()
    async with bootstrap.open_services(app_settings, sqlite_db) as services:
        client = services.github.client(7)
        assert client._on_response is not None
        client._on_response("GET", "https://api.github.com/repos/acme/app", 200, {"X-RateLimit-Remaining": "41"})
    assert counted.requests.labels("GET", "200")._value.get() == before + 1
    assert counted.rate_limit_remaining.labels("core")._value.get() == 41
