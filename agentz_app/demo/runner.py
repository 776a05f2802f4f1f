"""``agentz demo``: start a fake GitHub and every Agent-Z role, seed issues, watch them ship.

Everything runs on this machine: fakehub (REST API, signed webhooks, real bare git
repositories, simulated CI) in this process, and the receiver, scheduler, planner,
workers and reconciler as supervised child processes, exactly as ``agentz serve`` runs
them. The agent is the scripted backend by default, or a real CLI (Claude Code, Codex,
OpenCode) talking to the in-package fake model server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from agentz_app.demo import scenario
from agentz_app.demo.report import DemoReport, IssueOutcome, verdict_for
from agentz_app.fakehub.hub import FakeHub
from agentz_app.store.db import Database
from agentz_app.store.migrate import migrate
from agentz_app.store.models import IssueSnapshot, Run
from agentz_app.supervisor import RestartPolicy, Supervisor, build_specs

Echo = Callable[[str], None]
REAL_BACKENDS = ("claude", "codex", "opencode")
WEBHOOK_SECRET = "demo-webhook-secret"
APP_ID = 4242
APP_SLUG = "agent-z"
# Model credentials that make a real CLI use the real model instead of the fake one.
REAL_MODEL_KEYS = {"claude": ("ANTHROPIC_API_KEY",), "codex": ("OPENAI_API_KEY", "CODEX_API_KEY"),
                   "opencode": ("OPENAI_API_KEY",)}


@dataclass(frozen=True)
class DemoOptions:
    backend: str = "scripted"
    workers: int = 2
    timeout: float = 110.0
    keep: bool = False
    workspace: Path | None = None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _write_secret(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o600)


def demo_env(workspace: Path, *, api_url: str, git_url_template: str, receiver_port: int, backend: str,
             key_path: Path, script_path: Path) -> dict[str, str]:
    """The settings every demo process runs with (overriding anything in the caller's env)."""
    return {
        "DATABASE_URL": f"sqlite:///{workspace / 'agentz.db'}",
        "STATE_DIR": str(workspace / ".agent-z"),
        "GITHUB_APP_ID": str(APP_ID),
        "GITHUB_APP_SLUG": APP_SLUG,
        "GITHUB_PRIVATE_KEY_PATH": str(key_path),
        "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "GITHUB_API_URL": api_url,
        "GIT_URL_TEMPLATE": git_url_template,
        "GITHUB_REPO": scenario.REPO,
        "RECEIVER_HOST": "127.0.0.1",
        "RECEIVER_PORT": str(receiver_port),
        "DEFAULT_BACKEND": backend,
        "SCRIPTED_AGENT_FILE": str(script_path),
        "AGENT_TIMEOUT_SECONDS": "300",
        "MAX_PARALLEL_TASKS": "2",
        "SCHEDULER_DEBOUNCE_SECONDS": "1",
        "HEARTBEAT_SECONDS": "2",
        "LEASE_SECONDS": "15",
        "RECONCILE_INTERVAL_SECONDS": "2",
        "RESYNC_INTERVAL_SECONDS": "3600",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "info",
    }


class Demo:
    """One demo: workspace, fake GitHub, supervised roles, and the watcher that reports."""

    def __init__(self, options: DemoOptions, echo: Echo) -> None:
        self.options = options
        self.echo = echo
        self.workspace = options.workspace or Path(tempfile.mkdtemp(prefix="agentz-demo-"))
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.started = time.monotonic()
        self.hub: FakeHub | None = None
        self.db: Database | None = None
        self.supervisor: Supervisor | None = None
        self._extra_env: dict[str, str] = {}
        self._model: Any = None

    def say(self, message: str) -> None:
        self.echo(f"[{time.monotonic() - self.started:5.1f}s] {message}")

    async def run(self) -> DemoReport:
        """Run the whole scenario; always stops what it started."""
        supervisor_task: asyncio.Task[None] | None = None
        try:
            await self._start_model()
            env = await self._start_hub()
            self.db = Database.from_url(env["DATABASE_URL"])
            migrate(self.db)
            supervisor_task = self._start_roles(env)
            await self._wait_receiver(int(env["RECEIVER_PORT"]))
            await self._seed()
            ok = await self._watch()
            report = self._report(ok)
        finally:
            await self._stop(supervisor_task)
        return report

    # -- start ---------------------------------------------------------------

    async def _start_model(self) -> None:
        backend = self.options.backend
        if backend not in REAL_BACKENDS:
            return
        from workers.runners.cli import find_binary

        find_binary(backend, os.environ)  # fail early with the install hint when the CLI is missing
        if any(os.environ.get(name) for name in REAL_MODEL_KEYS[backend]):
            self.say(f"using the real model through {backend} (credentials found in the environment)")
            return
        from agentz_app.demo.model import model_scenario
        from agentz_app.fakemodel.server import FakeModelServer

        self._model = FakeModelServer(model_scenario())
        url = await self._model.start()
        self._extra_env["AGENTZ_MODEL_BASE_URL"] = url
        self.say(f"fake model server for {backend} at {url}")

    async def _start_hub(self) -> dict[str, str]:
        receiver_port = _free_port()
        key_pem = _private_key_pem()
        key_path = self.workspace / "app.private-key.pem"
        _write_secret(key_path, key_pem)
        self.hub = FakeHub(self.workspace / "github",
                           webhook_url=f"http://127.0.0.1:{receiver_port}/api/github/webhooks",
                           webhook_secret=WEBHOOK_SECRET, app_id=APP_ID, app_slug=APP_SLUG,
                           private_key_pem=key_pem, ci_concurrency=2)
        api_url = await self.hub.start()
        script_path = self.workspace / "scripted-agent.json"
        script_path.write_text(json.dumps({"steps": scenario.ScriptBuilder().build()}, indent=1))
        env = demo_env(self.workspace, api_url=api_url, git_url_template=self.hub.git_url_template,
                       receiver_port=receiver_port, backend=self.options.backend, key_path=key_path,
                       script_path=script_path)
        env.update(self._extra_env)
        self.say(f"fake GitHub at {api_url}; workspace {self.workspace}")
        return env

    def _start_roles(self, env: Mapping[str, str]) -> asyncio.Task[None]:
        assert self.db is not None
        env_file = self.workspace / "demo.env"
        env_file.write_text("".join(f"{key}={value}\n" for key, value in env.items()))
        specs = [replace(spec, env=dict(env)) for spec in
                 build_specs(self.options.workers, env_file=str(env_file))]
        logs = self.workspace / ".agent-z" / "logs"
        self.supervisor = Supervisor(specs, self.db, logs, policy=RestartPolicy(base_delay=0.5),
                                     grace_seconds=5.0, poll_interval=0.5)
        self.say("started " + ", ".join(spec.name for spec in specs))
        return asyncio.create_task(self.supervisor.run())

    async def _wait_receiver(self, port: int) -> None:
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as http:
            while True:
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                        if response.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise RuntimeError("the receiver did not become ready within 30 s; see its log")
                await asyncio.sleep(0.1)

    async def _seed(self) -> None:
        assert self.hub is not None
        ci = f"{sys.executable} -m pytest -q -p no:cacheprovider"
        await self.hub.create_repo(scenario.REPO, scenario.FILES, ci_command=ci)
        self.hub.set_permission(scenario.REPO, scenario.MAINTAINER, "admin")
        for issue in scenario.ISSUES:
            self.hub.create_issue(scenario.REPO, issue.title, issue.body, user=scenario.MAINTAINER,
                                  labels=list(issue.labels), assignees=list(issue.assignees))
        self.say(f"created {scenario.REPO} (its test suite fails) and {len(scenario.ISSUES)} issues")

    # -- watch ---------------------------------------------------------------

    def _runs(self) -> dict[int, Run]:
        assert self.db is not None
        with self.db.read() as session:
            rows = session.scalars(select(Run).where(Run.repo == scenario.REPO).order_by(Run.created_at))
            return {run.issue_number: run for run in rows}

    async def _watch(self) -> bool:
        seen: dict[int, str] = {}
        deadline = self.started + self.options.timeout
        while time.monotonic() < deadline:
            runs = self._runs()
            for number, run in sorted(runs.items()):
                label = str(run.status) + (f" (PR #{run.pr_number})" if run.pr_number else "")
                if seen.get(number) != label:
                    seen[number] = label
                    self.say(f"issue #{number}: {label}" + (f" — {run.error}" if run.error else ""))
            finished = [runs.get(n) for n in scenario.DELIVERABLE]
            if all(run is not None and str(run.status) in {"done", "merged"} for run in finished):
                self.say("every deliverable issue has a green pull request")
                return True
            if any(run is not None and str(run.status) in {"failed", "needs_human", "cancelled"}
                   for run in finished):
                self.say("a deliverable issue stopped without a pull request")
                return False
            await asyncio.sleep(0.25)
        self.say(f"timed out after {self.options.timeout:.0f}s")
        return False

    def _report(self, ok: bool) -> DemoReport:
        assert self.hub is not None and self.db is not None
        runs = self._runs()
        with self.db.read() as session:
            verdicts = {row.number: row.verdict for row in
                        session.scalars(select(IssueSnapshot).where(IssueSnapshot.repo == scenario.REPO))}
        check_runs = list(self.hub.state.data["check_runs"].values())
        outcomes = []
        for issue in scenario.ISSUES:
            run = runs.get(issue.number)
            checks: dict[str, str] = {}
            if run is not None:
                # Stage check runs of every head the run pushed, then CI on the final head.
                for check in sorted(check_runs, key=lambda c: c["id"]):
                    ours = str(check.get("external_id") or "").startswith(f"agent-z:{run.id}:")
                    if ours or (run.head_sha and check["head_sha"] == run.head_sha):
                        checks[check["name"]] = check.get("conclusion") or check.get("status") or "?"
            comments = self.hub.list_comments(scenario.REPO, issue.number)
            status_comments = sum("<!-- agent-z:status" in (c.get("body") or "") for c in comments)
            outcomes.append(IssueOutcome(
                number=issue.number, title=issue.title,
                verdict=verdict_for(str(run.status) if run else None, verdicts.get(issue.number)),
                run_status=str(run.status) if run else None, pr=run.pr_number if run else None,
                check_runs=checks, status_comments=status_comments))
        writes = int(self.hub.counters()["writes"])
        return DemoReport(outcomes, writes, time.monotonic() - self.started, ok=ok,
                          workspace=str(self.workspace) if self.options.keep else None)

    # -- stop ----------------------------------------------------------------

    async def _stop(self, supervisor_task: asyncio.Task[None] | None) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
        if supervisor_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(supervisor_task, 30)
        if self.hub is not None:
            await self.hub.stop()
        if self._model is not None:
            await self._model.stop()
        if self.db is not None:
            self.db.dispose()
        if not self.options.keep:
            shutil.rmtree(self.workspace, ignore_errors=True)


async def run_demo(options: DemoOptions, echo: Echo) -> DemoReport:
    """Run the demo scenario end to end and return its report."""
    return await Demo(options, echo).run()
