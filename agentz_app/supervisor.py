"""``agentz serve``: run every role as a child process and keep them running.

Each child is ``python -m agentz_app <role>`` (the command line is configurable per
:class:`ProcessSpec`, so tests run tiny scripts). Children start in their own process
group. Their stdout and stderr are merged into one pipe that the supervisor reads line
by line and appends to ``<logs_dir>/<name>.log`` through a size-rotating
:class:`logging.handlers.RotatingFileHandler` (10 MB, 5 backups by default), so children
need no logging set-up of their own and a child that floods its output cannot fill the disk.

A child that exits is restarted after an exponential backoff. Behind it sits a circuit
breaker: more than ``max_crashes`` exits within ``crash_window`` seconds put the child
in state ``broken``, where it stays down until an operator asks for a restart.

Every child has a row in the ``processes`` table, keyed by host and name (state
``starting``, ``running``, ``backoff``, ``broken`` or ``stopped``, pid, restarts,
heartbeat), which is what ``agentz top`` shows from another terminal or host.

Restart requests: any process may ask for a child to be restarted by writing a
``restart_requests`` row for its host and name (:func:`request_restart`; the dashboard's
``r r`` does this). The supervisor polls these rows every ``poll_interval`` seconds,
deletes the row and restarts the child, clearing a ``broken`` state.

Metrics: with a ``metrics_dir`` (``agentz serve`` passes ``PROMETHEUS_MULTIPROC_DIR``,
by default ``STATE_DIR/prometheus``) the folder is emptied at start, every child gets
it as ``PROMETHEUS_MULTIPROC_DIR`` and writes its ``prometheus_client`` metrics there,
and an exited child is marked dead (:mod:`agentz_app.metrics`).

SIGTERM and SIGINT stop the supervisor: children get SIGTERM (to their whole group),
then SIGKILL after ``grace_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

from sqlalchemy import select

from agentz_app.config import Settings
from agentz_app.logs import configure_logging, get_logger, redact_text
from agentz_app.metrics import MULTIPROC_ENV, mark_process_dead, reset_multiproc_dir
from agentz_app.secrets import configured_secret_values
from agentz_app.store.db import Database
from agentz_app.store.models import Process, now
from agentz_app.store.restart_requests import take_restart_requests

# The roles ``agentz serve`` runs, in start order; each is an ``agentz`` subcommand.
ROLES: tuple[str, ...] = ("receiver", "scheduler", "planner", "worker", "reconciler")

STARTING = "starting"
RUNNING = "running"
BACKOFF = "backoff"
BROKEN = "broken"
STOPPED = "stopped"

Clock = Callable[[], float]
LineEcho = Callable[[str, str], None]


@dataclass(frozen=True)
class ProcessSpec:
    """One supervised child: its unique name, its role and its command line."""

    name: str
    role: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)


def build_specs(
    workers: int,
    *,
    python: str | None = None,
    env_file: str | None = None,
    roles: Sequence[str] = ROLES,
) -> list[ProcessSpec]:
    """The child processes of ``agentz serve``: one per role, ``workers`` workers."""
    if workers < 1:
        raise ValueError("workers must be at least 1")
    base = [python or sys.executable, "-m", "agentz_app"]
    if env_file:
        base += ["--env-file", env_file]
    specs: list[ProcessSpec] = []
    for role in roles:
        if role == "worker":
            specs += [
                ProcessSpec(f"worker-{index}", role, (*base, role)) for index in range(1, workers + 1)
            ]
        else:
            specs.append(ProcessSpec(role, role, (*base, role)))
    return specs


@dataclass(frozen=True)
class RestartPolicy:
    """Exponential backoff between restarts and the circuit breaker's limits."""

    base_delay: float = 1.0
    max_delay: float = 60.0
    max_crashes: int = 5
    crash_window: float = 300.0

    def delay(self, recent_crashes: int) -> float:
        """Seconds to wait before restarting after the ``recent_crashes``-th crash."""
        exponent = max(recent_crashes - 1, 0)
        return float(min(self.max_delay, self.base_delay * (2**min(exponent, 30))))


class CrashHistory:
    """Crash times of one child, for the circuit breaker (pure: time is passed in)."""

    def __init__(self, policy: RestartPolicy) -> None:
        self.policy = policy
        self._times: deque[float] = deque()

    def record(self, at: float) -> None:
        """Remember a crash at ``at``."""
        self._times.append(at)

    def recent(self, at: float) -> int:
        """Crashes within the window ending at ``at``."""
        while self._times and self._times[0] < at - self.policy.crash_window:
            self._times.popleft()
        return len(self._times)

    def tripped(self, at: float) -> bool:
        """True when more than ``max_crashes`` crashes fall within the window."""
        return self.recent(at) > self.policy.max_crashes

    def reset(self) -> None:
        """Forget every crash (after an operator's restart)."""
        self._times.clear()


def open_child_log(path: Path, *, max_bytes: int = 10 * 1024 * 1024, backups: int = 5) -> RotatingFileHandler:
    """A log file for one child's output, rotated by size: ``name.log`` → ``name.log.1`` … ``.N``."""
    if max_bytes < 1 or backups < 1:
        raise ValueError("max_bytes and backups must be positive")
    path.parent.mkdir(parents=True, exist_ok=True)
    return RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8",
                               errors="surrogateescape")


def write_child_line(log: RotatingFileHandler, line: bytes) -> None:
    """Append one line of a child's output to ``log`` byte for byte, rotating first when it is full."""
    text = line.decode("utf-8", errors="surrogateescape").removesuffix("\n")
    log.handle(logging.makeLogRecord({"msg": text, "levelno": logging.INFO, "levelname": "INFO"}))


@dataclass
class _Child:
    spec: ProcessSpec
    history: CrashHistory
    state: str = STOPPED
    pid: int | None = None
    restarts: int = 0
    started_at: float = 0.0
    restart_at: float | None = None
    detail: str = ""
    proc: asyncio.subprocess.Process | None = None
    restart: asyncio.Event = field(default_factory=asyncio.Event)


class Supervisor:
    """Start, watch, restart and stop the children described by ``specs``."""

    def __init__(
        self,
        specs: Sequence[ProcessSpec],
        db: Database,
        logs_dir: Path,
        *,
        policy: RestartPolicy | None = None,
        grace_seconds: float = 10.0,
        poll_interval: float = 1.0,
        heartbeat_interval: float = 5.0,
        log_max_bytes: int = 10 * 1024 * 1024,
        log_backups: int = 5,
        host: str | None = None,
        echo: LineEcho | None = None,
        clock: Clock = now,
        metrics_dir: Path | None = None,
    ) -> None:
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise ValueError("process names must be unique")
        self.db = db
        self.logs_dir = logs_dir
        self.policy = policy or RestartPolicy()
        self.grace_seconds = grace_seconds
        self.poll_interval = poll_interval
        self.heartbeat_interval = heartbeat_interval
        self.log_max_bytes = log_max_bytes
        self.log_backups = log_backups
        self.host = host or socket.gethostname()
        self.echo = echo
        self.clock = clock
        self.metrics_dir = metrics_dir
        self._children = {spec.name: _Child(spec, CrashHistory(self.policy)) for spec in specs}
        self._stopping = asyncio.Event()
        self._log = get_logger("agentz.supervisor")

    # Public API ----------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return list(self._children)

    def state_of(self, name: str) -> str:
        """The current state of child ``name``."""
        return self._children[name].state

    def restart(self, name: str) -> None:
        """Restart child ``name`` now (also clears a ``broken`` state)."""
        self._children[name].restart.set()

    def stop(self) -> None:
        """Ask every child to stop; :meth:`run` returns once they have."""
        self._stopping.set()

    async def wait_stopping(self) -> None:
        """Return once a stop was asked for."""
        await self._stopping.wait()

    def install_signal_handlers(self, loop: asyncio.AbstractEventLoop) -> None:
        """Stop on SIGTERM and SIGINT."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop)

    async def run(self) -> None:
        """Supervise until :meth:`stop`; then stop every child and record it.

        With ``metrics_dir`` the children run in ``prometheus_client``'s multiprocess
        mode there; the folder is emptied first.
        """
        if self.metrics_dir is not None:
            reset_multiproc_dir(self.metrics_dir)
        tasks = [asyncio.create_task(self._supervise(child)) for child in self._children.values()]
        housekeeping = asyncio.create_task(self._housekeeping())
        try:
            await self._stopping.wait()
        finally:
            self._stopping.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await housekeeping

    # Child lifecycle -----------------------------------------------------

    async def _supervise(self, child: _Child) -> None:
        log = open_child_log(self.logs_dir / f"{child.spec.name}.log", max_bytes=self.log_max_bytes,
                             backups=self.log_backups)
        try:
            while not self._stopping.is_set():
                if child.state == BROKEN:
                    await self._first_of(self._stopping, child.restart)
                    if self._stopping.is_set():
                        break
                    child.history.reset()
                child.restart.clear()
                await self._run_once(child, log)
                if self._stopping.is_set():
                    break
                if child.restart.is_set():
                    child.restarts += 1
                    child.history.reset()
                    continue
                at = self.clock()
                child.history.record(at)
                child.restarts += 1
                if child.history.tripped(at):
                    await self._set_state(child, BROKEN)
                    self._log.error("process broken", process=child.spec.name,
                                    crashes=child.history.recent(at), window=self.policy.crash_window)
                    continue
                delay = self.policy.delay(child.history.recent(at))
                child.restart_at = at + delay
                await self._set_state(child, BACKOFF, detail=f"{child.detail}; restart in {delay:.0f}s")
                with contextlib.suppress(TimeoutError):  # the back-off ends early on a restart or a stop
                    async with asyncio.timeout(delay):
                        await self._first_of(self._stopping, child.restart)
                child.restart_at = None
        finally:
            log.close()
            child.pid = None
            await self._set_state(child, STOPPED)

    async def _run_once(self, child: _Child, log: RotatingFileHandler) -> None:
        spec = child.spec
        await self._set_state(child, STARTING, detail="")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "AGENTZ_PROCESS_NAME": spec.name, **spec.env}
        if self.metrics_dir is not None:
            env[MULTIPROC_ENV] = str(self.metrics_dir.resolve())
        try:
            proc = await asyncio.create_subprocess_exec(
                *spec.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            child.detail = f"cannot start: {exc.strerror or exc}"
            self._log.error("process failed to start", process=spec.name, error=child.detail)
            return
        child.proc = proc
        child.pid = proc.pid
        child.started_at = self.clock()
        await self._set_state(child, RUNNING)
        self._log.info("process started", process=spec.name, pid=proc.pid)
        pump = asyncio.create_task(self._pump(child, proc, log))
        exited = asyncio.create_task(proc.wait())
        interrupt = asyncio.create_task(self._first_of(self._stopping, child.restart))
        await asyncio.wait({exited, interrupt}, return_when=asyncio.FIRST_COMPLETED)
        interrupt.cancel()
        if not exited.done():
            await self._terminate(proc)
        code = await exited
        await pump
        if self.metrics_dir is not None:
            mark_process_dead(self.metrics_dir.resolve(), proc.pid)
        child.proc = None
        child.detail = f"exited with {_describe_exit(code)}"
        self._log.info("process exited", process=spec.name, pid=proc.pid, code=code)

    async def _pump(self, child: _Child, proc: asyncio.subprocess.Process, log: RotatingFileHandler) -> None:
        assert proc.stdout is not None
        while True:
            line = await proc.stdout.readline()
            if not line:
                return
            write_child_line(log, line)
            if self.echo is not None:
                self.echo(child.spec.name, redact_text(line.decode("utf-8", errors="replace").rstrip("\n")))

    async def _terminate(self, proc: asyncio.subprocess.Process) -> None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), self.grace_seconds)
        except TimeoutError:
            self._log.warning("process ignored SIGTERM; killing", pid=proc.pid)
            _signal_group(proc.pid, signal.SIGKILL)
        # Whatever the leader left in its group goes too.
        await proc.wait()
        _signal_group(proc.pid, signal.SIGKILL)

    async def _first_of(self, *events: asyncio.Event) -> None:
        waits = [asyncio.create_task(event.wait()) for event in events]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()

    # Database records ----------------------------------------------------

    async def _set_state(self, child: _Child, state: str, *, detail: str | None = None) -> None:
        child.state = state
        if detail is not None:
            child.detail = detail
        row = {
            "name": child.spec.name,
            "role": child.spec.role,
            "pid": child.pid if state in (STARTING, RUNNING) else None,
            "host": self.host,
            "state": state,
            "restarts": child.restarts,
            "started_at": child.started_at or self.clock(),
            "heartbeat_at": self.clock(),
            "detail": redact_text(child.detail)[:2000],
            "restart_at": child.restart_at if state == BACKOFF else None,
            "recent_crashes": child.history.recent(self.clock()),
        }
        try:
            await self.db.run(_upsert_process, self.db, row)
        except Exception as exc:  # noqa: BLE001 - the supervisor loop: children are supervised even while the database is away
            self._log.warning("cannot record process state", process=child.spec.name, error=str(exc))

    async def _housekeeping(self) -> None:
        last_beat = self.clock()
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                for name in await self.db.run(take_restart_requests, self.db, self.host, self.names):
                    self._log.info("restart requested", process=name)
                    self.restart(name)
                if self.clock() - last_beat >= self.heartbeat_interval:
                    last_beat = self.clock()
                    await self.db.run(_beat, self.db, self.host, self.names, last_beat)
            except Exception as exc:  # noqa: BLE001 - the supervisor loop: children are supervised even while the database is away
                self._log.warning("supervisor housekeeping failed", error=str(exc))


def _upsert_process(db: Database, values: dict[str, Any]) -> None:
    with db.begin() as session:
        row = session.get(Process, (values["host"], values["name"]))
        if row is None:
            session.add(Process(**values))
        else:
            for key, value in values.items():
                setattr(row, key, value)


def _beat(db: Database, host: str, names: Sequence[str], at: float) -> None:
    with db.begin() as session:
        for row in session.scalars(select(Process).where(Process.host == host, Process.name.in_(names))):
            row.heartbeat_at = at


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


async def serve(
    supervisor: Supervisor,
    *,
    dashboard: Callable[[Supervisor], Any] | None = None,
) -> None:
    """Run ``supervisor`` until a signal (or the dashboard's quit) stops it.

    ``dashboard`` builds a Textual app for the supervisor; when given, it runs in the
    same event loop and quitting it stops every child.
    """
    loop = asyncio.get_running_loop()
    supervisor.install_signal_handlers(loop)
    task = asyncio.create_task(supervisor.run())
    try:
        if dashboard is not None:
            app = dashboard(supervisor)
            stop_waiter = asyncio.create_task(supervisor.wait_stopping())
            ui = asyncio.create_task(app.run_async())
            await asyncio.wait({stop_waiter, ui}, return_when=asyncio.FIRST_COMPLETED)
            if not ui.done():
                app.exit()
                await ui
            stop_waiter.cancel()
            supervisor.stop()
        await task
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def _print_line(name: str, line: str) -> None:
    print(f"{name} | {line}", flush=True)


def run_serve(
    settings: Settings,
    db: Database,
    *,
    workers: int | None = None,
    dashboard: Callable[[Supervisor], Any] | None = None,
    env_file: str | None = None,
) -> None:
    """``agentz serve``: supervise every role; with ``dashboard`` (built from the supervisor) show it in-process.

    Without the dashboard, children's output is echoed as ``name | line`` on stdout.
    With it, the supervisor's own log goes to ``<logs_dir>/supervisor.log`` so the
    screen stays clean.
    """
    specs = build_specs(workers or settings.workers, env_file=env_file)
    log_file = None
    if dashboard is not None:
        settings.logs_dir.mkdir(parents=True, exist_ok=True)
        log_file = (settings.logs_dir / "supervisor.log").open("a")
        configure_logging("json", settings.log_level, stream=log_file,
                          secret_values=configured_secret_values(settings))
    echo = None if dashboard is not None else _print_line
    supervisor = Supervisor(specs, db, settings.logs_dir, echo=echo, host=settings.host_id,
                            metrics_dir=settings.metrics_dir)
    try:
        asyncio.run(serve(supervisor, dashboard=dashboard))
    finally:
        if log_file is not None:
            log_file.close()
