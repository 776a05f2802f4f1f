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
import inspect
import json
import os
import re
import shlex
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from agentz_app.config import default_host_id
from agentz_app.demo import scenario
from agentz_app.demo.model import model_scenario
from agentz_app.demo.report import DemoReport, IssueOutcome, ci_failure, verdict_for
from agentz_app.errors import AgentZError
from agentz_app.fakehub.faults import FaultConfig
from agentz_app.fakehub.hub import FakeHub
from agentz_app.fakemodel.server import FakeModelServer
from agentz_app.store.db import Database
from agentz_app.store.migrate import migrate
from agentz_app.store.models import IssueSnapshot, Process, Run
from agentz_app.supervisor import ROLES, RestartPolicy, Supervisor, build_specs

Echo = Callable[[str], None]
REAL_BACKENDS = ("claude", "codex", "opencode")
WEBHOOK_SECRET = "demo-webhook-secret"
APP_ID = 4242
APP_SLUG = "agent-z"
# Model credentials that make a real CLI use the real model instead of the fake one.
REAL_MODEL_KEYS = {"claude": ("ANTHROPIC_API_KEY",), "codex": ("OPENAI_API_KEY", "CODEX_API_KEY"),
                   "opencode": ("OPENAI_API_KEY",)}




@dataclass(frozen=True)
class HostProbes:
    """What the demo asks of this host before starting: the entry point passes the real ones.

    ``find_cli(backend, environ)`` raises with an install hint when the backend's CLI is missing;
    ``sandbox_works()`` says whether bubblewrap can confine agents here.
    """

    find_cli: Callable[[str, Mapping[str, str]], object]
    sandbox_works: Callable[[], bool]


FINISHED = frozenset({"done", "merged"})
STOPPED = frozenset({"failed", "needs_human", "cancelled"})
SETTLE_SECONDS = 60.0  # how long settle() waits for the quiet period


@dataclass(frozen=True)
class DemoOptions:
    """How to run the demo; the fields after ``workspace`` make it a test and benchmark harness.

    ``faults`` is applied to the fake GitHub before any role starts; ``issues`` seeds
    only those scenario issues (GitHub numbers issues in creation order, so it must be
    ``1..k``); ``env`` overrides settings of every role (``LEASE_SECONDS`` ...);
    ``ci_command`` replaces the repository's CI (the default runs its unittest suite);
    ``agent_sleep`` delays every scripted agent step by that many seconds; ``script``
    replaces the scripted agent's steps; ``restart_policy`` is the supervisor's;
    ``roles`` are the roles this host runs (the receiver always among them; more hosts
    join with :meth:`Demo.add_host`).
    """

    backend: str = "scripted"
    workers: int = 2
    timeout: float = 110.0
    keep: bool = False
    workspace: Path | None = None
    faults: FaultConfig | None = None
    issues: tuple[int, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    ci_command: str | None = None
    agent_sleep: float = 0.0
    script: tuple[dict[str, Any], ...] | None = None
    restart_policy: RestartPolicy | None = None
    roles: tuple[str, ...] = ROLES

    def seeded(self) -> tuple[scenario.DemoIssue, ...]:
        """The scenario issues this demo creates, validated."""
        if self.issues is None:
            return scenario.ISSUES
        wanted = sorted(set(self.issues))
        known = [issue.number for issue in scenario.ISSUES]
        if wanted != known[: len(wanted)]:
            raise ValueError(f"issues must be the first k scenario issues (1..k or none), got {list(self.issues)}")
        return tuple(issue for issue in scenario.ISSUES if issue.number in wanted)

    def deliverable(self) -> tuple[int, ...]:
        """The seeded issues expected to end with a green pull request."""
        return tuple(issue.number for issue in self.seeded() if issue.expected == "ran")


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
        # The demo's CI creates every check suite at push: no late suites to wait for.
        "CI_QUIET_SECONDS": "1",
        "RECONCILE_INTERVAL_SECONDS": "2",
        "RESYNC_INTERVAL_SECONDS": "3600",
        "CLAIMS_UNTIL_MERGED": "false",  # nobody merges the demo's pull requests
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "info",
    }


def demo_script(options: DemoOptions) -> list[dict[str, Any]]:
    """The scripted agent's steps: given ones or the scenario's; plus a delay."""
    given = options.script
    steps = [dict(step) for step in given] if given is not None else scenario.ScriptBuilder().build()
    if options.agent_sleep > 0:
        steps = [{**step, "sleep": options.agent_sleep} for step in steps]
    return steps


_BRANCH_ISSUE = re.compile(r"^agent-z/issue-(\d+)(?:-|$)")


@dataclass(frozen=True)
class Audit:
    """What Agent-Z left on the fake GitHub, for duplicate checks."""

    pulls: dict[int, list[int]]  # issue number -> numbers of PRs from Agent-Z branches for it
    status_comments: dict[int, int]  # issue number -> status comments on it
    duplicate_checks: list[tuple[str, str]]  # (check name, head SHA) reported more than once

    def duplicate_pulls(self) -> int:
        """PRs beyond the first per issue."""
        return sum(max(len(numbers) - 1, 0) for numbers in self.pulls.values())

    def duplicate_comments(self) -> int:
        """Status comments beyond the first per issue."""
        return sum(max(count - 1, 0) for count in self.status_comments.values())


def _nothing(_: str) -> None:
    return None


class Demo:
    """One demo: workspace, fake GitHub, supervised roles, and the watcher that reports.

    :meth:`run` does everything once. As a harness, use it as an async context manager
    (start on enter, stop on exit) and call :meth:`seed`, :meth:`wait_delivered`,
    :meth:`wait_for`, :meth:`settle`, :meth:`kill`, :meth:`audit` and :meth:`report`.
    """

    def __init__(self, options: DemoOptions, echo: Echo | None = None, *, probes: HostProbes | None = None) -> None:
        options.seeded()  # validate the issue subset before starting anything
        self.options = options
        self.probes = probes
        self.echo = echo or _nothing
        self.workspace = options.workspace or Path(tempfile.mkdtemp(prefix="agentz-demo-"))
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.started = time.monotonic()
        self.hub: FakeHub | None = None
        self.db: Database | None = None
        self.supervisor: Supervisor | None = None
        self.env: dict[str, str] = {}
        self._extra_env: dict[str, str] = {}
        self._model: Any = None
        self._supervisor_task: asyncio.Task[None] | None = None
        self.host = options.env.get("HOST_ID") or default_host_id()
        self._hosts: list[tuple[Supervisor, asyncio.Task[None]]] = []

    def say(self, message: str) -> None:
        self.echo(f"[{time.monotonic() - self.started:5.1f}s] {message}")

    async def run(self) -> DemoReport:
        """Run the whole scenario; always stops what it started."""
        try:
            await self.start()
            await self.seed()
            ok = await self.wait_delivered()
            assert self.db is not None
            report = self.report(ok, stored=await self.db.run(self.stored_outcomes))
        finally:
            await self.stop()
        return report

    async def __aenter__(self) -> Demo:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        await self.stop()

    # -- start ---------------------------------------------------------------

    async def start(self) -> None:
        """Start the fake GitHub (and model), migrate the database, start every role."""
        await self._start_model()
        self.env = await self._start_hub()
        self.db = Database.from_url(self.env["DATABASE_URL"])
        await self.db.run(migrate, self.db)
        self._supervisor_task = self._start_roles(self.env)
        await self._wait_receiver(int(self.env["RECEIVER_PORT"]))

    async def _start_model(self) -> None:
        backend = self.options.backend
        if backend not in REAL_BACKENDS:
            return
        if self.probes is not None:
            self.probes.find_cli(backend, os.environ)  # fail early with the install hint when the CLI is missing
        if any(os.environ.get(name) for name in REAL_MODEL_KEYS[backend]):
            self.say(f"using the real model through {backend} (credentials found in the environment)")
            return
        self._model = FakeModelServer(model_scenario())
        url = await self._model.start()
        self._extra_env["AGENTZ_MODEL_BASE_URL"] = url
        self.say(f"fake model server for {backend} at {url}")

    async def _start_hub(self) -> dict[str, str]:
        receiver_port = _free_port()
        key_pem = _private_key_pem()
        key_path = self.workspace / "app.private-key.pem"
        _write_secret(key_path, key_pem)
        faults = replace(self.options.faults) if self.options.faults is not None else None
        self.hub = FakeHub(self.workspace / "github",
                           webhook_url=f"http://127.0.0.1:{receiver_port}/api/github/webhooks",
                           webhook_secret=WEBHOOK_SECRET, app_id=APP_ID, app_slug=APP_SLUG,
                           private_key_pem=key_pem, ci_concurrency=2, faults=faults)
        api_url = await self.hub.start()
        script_path = self.workspace / "scripted-agent.json"
        script_path.write_text(json.dumps({"steps": demo_script(self.options)}, indent=1))
        env = demo_env(self.workspace, api_url=api_url, git_url_template=self.hub.git_url_template,
                       receiver_port=receiver_port, backend=self.options.backend, key_path=key_path,
                       script_path=script_path)
        env.update(self._extra_env)
        env.update(self._sandbox_env())
        env.update(self.options.env)
        self.say(f"fake GitHub at {api_url}; workspace {self.workspace}")
        return env

    def _sandbox_env(self) -> dict[str, str]:
        """Agents run in the bubblewrap sandbox where this host can; the demo says so when it cannot.

        Without probes (a test or benchmark harness) the sandbox is assumed to work: the roles
        still check it at start and stop with the fix when it does not.
        """
        if "AGENT_SANDBOX" in self.options.env or self.probes is None or self.probes.sandbox_works():
            return {}
        self.say("warning: bubblewrap is not usable here, so the demo's agents run unsandboxed "
                 "(apt-get install bubblewrap)")
        return {"AGENT_SANDBOX": "none"}

    def _start_roles(self, env: Mapping[str, str]) -> asyncio.Task[None]:
        assert self.db is not None
        self.supervisor = self._supervisor(self.workspace, {**env, "HOST_ID": self.host}, self.options.roles,
                                           self.options.workers, self.options.restart_policy)
        return asyncio.create_task(self.supervisor.run())

    def _supervisor(self, root: Path, env: Mapping[str, str], roles: tuple[str, ...], workers: int,
                    policy: RestartPolicy | None) -> Supervisor:
        assert self.db is not None
        env_file = root / f"demo-{'-'.join(roles)}.env" if root != self.workspace else root / "demo.env"
        env_file.write_text("".join(f"{key}={value}\n" for key, value in env.items()))
        specs = [replace(spec, env=dict(env)) for spec in
                 build_specs(workers, env_file=str(env_file), roles=roles)]
        supervisor = Supervisor(specs, self.db, Path(env["STATE_DIR"]) / "logs",
                                policy=policy or RestartPolicy(base_delay=0.5), grace_seconds=5.0,
                                poll_interval=0.5, host=env["HOST_ID"])
        self.say(f"started {', '.join(spec.name for spec in specs)} on {env['HOST_ID']}")
        return supervisor

    def add_host(self, host_id: str, roles: tuple[str, ...] = ("worker",), *, workers: int = 1,
                 restart_policy: RestartPolicy | None = None) -> Supervisor:
        """Start ``roles`` as another host: its own ``HOST_ID`` and ``STATE_DIR``, the same database and GitHub.

        Calling it again with the same ``host_id`` adds roles to that host (same state folder).
        """
        root = self.workspace / "hosts" / host_id
        root.mkdir(parents=True, exist_ok=True)
        env = {**self.env, "HOST_ID": host_id, "STATE_DIR": str(root / ".agent-z")}
        supervisor = self._supervisor(root, env, roles, workers, restart_policy)
        self._hosts.append((supervisor, asyncio.create_task(supervisor.run())))
        return supervisor

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

    async def seed(self) -> None:
        """Create the repository and the chosen issues, as a maintainer would."""
        assert self.hub is not None
        ci = self.options.ci_command or scenario.TEST_COMMAND.replace("python", shlex.quote(sys.executable), 1)
        await self.hub.repos.create(scenario.REPO, scenario.FILES, ci_command=ci)
        self.hub.repos.set_permission(scenario.REPO, scenario.MAINTAINER, "admin")
        issues = self.options.seeded()
        for issue in issues:
            self.hub.issues.create(scenario.REPO, issue.title, issue.body, user=issue.author,
                                  labels=list(issue.labels), assignees=list(issue.assignees))
        self.say(f"created {scenario.REPO} (its test suite fails) and {len(issues)} issues")

    # -- watch ---------------------------------------------------------------

    def runs(self) -> dict[int, Run]:
        """The latest run per issue of the demo repository."""
        assert self.db is not None
        with self.db.read() as session:
            rows = session.scalars(select(Run).where(Run.repo == scenario.REPO).order_by(Run.created_at))
            return {run.issue_number: run for run in rows}

    async def wait_delivered(self) -> bool:
        """Wait until every deliverable issue has a green PR; False when one stops or the demo's time runs out."""
        seen: dict[int, str] = {}
        reported: set[int] = set()
        deadline = self.started + self.options.timeout
        deliverable = self.options.deliverable()
        while time.monotonic() < deadline:
            runs = await self.db.run(self.runs) if self.db is not None else {}
            for number, run in sorted(runs.items()):
                label = str(run.status) + (f" (PR #{run.pr_number})" if run.pr_number else "")
                if seen.get(number) != label:
                    seen[number] = label
                    self.say(f"issue #{number}: {label}" + (f" — {run.error}" if run.error else ""))
            self._report_ci_failures(reported)
            finished = [runs.get(n) for n in deliverable]
            if all(run is not None and str(run.status) in FINISHED for run in finished):
                self.say("every deliverable issue has a green pull request")
                return True
            if any(run is not None and str(run.status) in STOPPED for run in finished):
                self.say("a deliverable issue stopped without a pull request")
                return False
            await asyncio.sleep(0.25)
        self.say(f"timed out after {time.monotonic() - self.started:.0f}s")
        for line in self.stuck_reasons(await self.db.run(self.runs) if self.db is not None else {}):
            self.say(line)
        return False

    def ci_failures(self) -> list[dict[str, Any]]:
        """The failed CI check runs (not Agent-Z's own) on the demo repository, oldest first."""
        if self.hub is None:
            return []
        checks = sorted(self.hub.state.data["check_runs"].values(), key=lambda check: check["id"])
        return [check for check in checks if check.get("repo") == scenario.REPO and check.get("conclusion")
                in ("failure", "timed_out") and not str(check.get("name", "")).startswith("Agent-Z")]

    def _report_ci_failures(self, reported: set[int]) -> None:
        for check in self.ci_failures():
            if check["id"] not in reported:
                reported.add(check["id"])
                self.say(f"CI failed on {str(check['head_sha'])[:7]}: {ci_failure(check)}")

    def stuck_reasons(self, runs: dict[int, Run] | None = None) -> list[str]:
        """Why each deliverable issue is not done yet: its state, and the last failing CI step on its head."""
        runs = self.runs() if runs is None else runs
        failures = self.ci_failures()
        lines = []
        for number in self.options.deliverable():
            run = runs.get(number)
            if run is None:
                lines.append(f"issue #{number}: never queued (see the scheduler's log)")
                continue
            if str(run.status) in FINISHED:
                continue
            line = f"issue #{number}: still {run.status}" + (f" — {run.error}" if run.error else "")
            failed = [check for check in failures if run.head_sha and check["head_sha"] == run.head_sha]
            if failed:
                line += f"; CI fails: {ci_failure(failed[-1])}"
            lines.append(line)
        return lines

    async def wait_for(
        self,
        predicate: Callable[[], bool | Awaitable[bool]],
        *,
        timeout: float,  # noqa: ASYNC109 - a deadline that returns False, as asyncio.wait(timeout=) returns
        interval: float = 0.1,
    ) -> bool:
        """Poll ``predicate`` (a coroutine function when it reads the database) until it holds (True)
        or ``timeout`` seconds pass (False)."""
        deadline = time.monotonic() + timeout
        while True:
            held = predicate()
            if await held if inspect.isawaitable(held) else held:
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(interval)

    async def settle(self, *, quiet: float = 3.0) -> bool:
        """Wait until for ``quiet`` seconds no CI ran, no webhook was pending, no run changed and
        GitHub answered nothing but 304s (cleanup after ``done`` still writes labels and comments);
        False after SETTLE_SECONDS."""
        assert self.hub is not None
        deadline = time.monotonic() + SETTLE_SECONDS
        last: Any = None
        since = time.monotonic()
        while time.monotonic() < deadline:
            busy = self.hub.ci.pending or self.hub.emitter.pending
            counters = self.hub.counters()
            latest = await self.db.run(self.runs) if self.db is not None else {}
            runs = [(n, str(r.status), r.attempt, r.updated_at) for n, r in sorted(latest.items())]
            state = (runs, counters["total"] - counters["not_modified"])
            if busy or state != last:
                last, since = state, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return True
            await asyncio.sleep(0.1)
        return False

    # -- processes -----------------------------------------------------------

    def pid_of(self, name: str, *, host: str | None = None) -> int | None:
        """The pid of supervised child ``name`` (of this host, or ``host``) while it runs, else None."""
        assert self.db is not None
        with self.db.read() as session:
            row = session.get(Process, (host or self.host, name))
            if row is None or row.state != "running" or row.pid is None:
                return None
            return int(row.pid)

    def name_of(self, pid: int, *, host: str | None = None) -> str | None:
        """The supervised child running as ``pid`` (on this host, or ``host``), if any."""
        assert self.db is not None
        with self.db.read() as session:
            row = session.scalars(select(Process).where(
                Process.host == (host or self.host), Process.pid == pid, Process.state == "running")).first()
            return row.name if row is not None else None

    def kill(self, name: str, sig: int = signal.SIGKILL, *, host: str | None = None) -> int | None:
        """Send ``sig`` to child ``name`` alone (like ``kill -9 <pid>``); returns the pid, or None if not running."""
        pid = self.pid_of(name, host=host)
        if pid is None:
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        if b"agentz_app" not in cmdline:
            return None  # the row is stale and the pid belongs to someone else now
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        self.say(f"sent signal {sig} to {name} (pid {pid})")
        return pid

    # -- results -------------------------------------------------------------

    def audit(self) -> Audit:
        """PRs and status comments per issue and check runs reported twice on one head."""
        assert self.hub is not None
        pulls: dict[int, list[int]] = {}
        for pull in self.hub.pulls.find(scenario.REPO, state="all", direction="asc"):
            match = _BRANCH_ISSUE.match(str((pull.get("head") or {}).get("ref") or ""))
            if match:
                pulls.setdefault(int(match.group(1)), []).append(int(pull["number"]))
        comments = {}
        for issue in self.hub.issues.find(scenario.REPO, state="all"):
            if issue.get("pull_request"):
                continue
            bodies = [str(c.get("body") or "") for c in self.hub.comments.find(scenario.REPO, int(issue["number"]))]
            comments[int(issue["number"])] = sum("<!-- agent-z:status" in body for body in bodies)
        seen: dict[tuple[str, str], int] = {}
        for check in self.hub.state.data["check_runs"].values():
            key = (str(check["name"]), str(check["head_sha"]))
            seen[key] = seen.get(key, 0) + 1
        return Audit(pulls, comments, sorted(key for key, count in seen.items() if count > 1))

    def stored_outcomes(self) -> tuple[dict[int, Run], dict[int, str | None]]:
        """The latest run and the scheduler's verdict per issue, from the database."""
        assert self.db is not None
        runs = self.runs()
        with self.db.read() as session:
            verdicts = {row.number: row.verdict for row in
                        session.scalars(select(IssueSnapshot).where(IssueSnapshot.repo == scenario.REPO))}
        return runs, verdicts

    def report(self, ok: bool, *, stored: tuple[dict[int, Run], dict[int, str | None]] | None = None) -> DemoReport:
        """The demo's summary from the database (``stored``, else read now) and the fake GitHub."""
        assert self.hub is not None
        runs, verdicts = self.stored_outcomes() if stored is None else stored
        check_runs = list(self.hub.state.data["check_runs"].values())
        outcomes = []
        for issue in self.options.seeded():
            run = runs.get(issue.number)
            checks: dict[str, str] = {}
            if run is not None:
                # Stage check runs of every head the run pushed, then CI on the final head.
                for check in sorted(check_runs, key=lambda c: c["id"]):
                    ours = str(check.get("external_id") or "").startswith(f"agent-z:{run.id}:")
                    if ours or (run.head_sha and check["head_sha"] == run.head_sha):
                        checks[check["name"]] = check.get("conclusion") or check.get("status") or "?"
            comments = self.hub.comments.find(scenario.REPO, issue.number)
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

    async def stop(self) -> None:
        """Stop every role, the fake GitHub and model; remove the workspace unless kept. Idempotent."""
        for supervisor, task in self._hosts:
            supervisor.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 30)
        self._hosts = []
        if self.supervisor is not None:
            self.supervisor.stop()
        if self._supervisor_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._supervisor_task, 30)
            self._supervisor_task = None
        if self.hub is not None:
            await self.hub.stop()
            self.hub = None
        if self._model is not None:
            await self._model.stop()
            self._model = None
        if self.db is not None:
            self.db.dispose()
            self.db = None
        if not self.options.keep:
            shutil.rmtree(self.workspace, ignore_errors=True)


class DemoInterrupted(AgentZError):
    """SIGTERM or SIGINT stopped the demo; every process it started is gone, and so is its workspace."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}; every process the demo started has exited")


async def run_demo(options: DemoOptions, echo: Echo, *, probes: HostProbes | None = None) -> DemoReport:
    """Run the demo scenario end to end and return its report.

    SIGTERM and SIGINT cancel it: every child process stops, the fake GitHub closes its port and
    the workspace is removed (unless kept), then DemoInterrupted is raised.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    received: list[int] = []

    def on_signal(signum: int) -> None:
        if not received:  # a second signal must not interrupt the clean-up
            received.append(signum)
            echo(f"received {signal.Signals(signum).name}: stopping every process and removing the workspace")
            task.cancel()

    handled = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, on_signal, signum)
            handled.append(signum)
    try:
        return await Demo(options, echo, probes=probes).run()
    except asyncio.CancelledError:
        if received:
            raise DemoInterrupted(received[0]) from None
        raise
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)
