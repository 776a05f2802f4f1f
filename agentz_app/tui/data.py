"""The dashboard's view model: database rows turned into table cells and text.

Everything here is pure except the ``load_*`` readers, which only open read
transactions (:meth:`Database.read`) and the run log files.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from agentz_app.domain.states import LIVE, TERMINAL
from agentz_app.errors import AgentZError
from agentz_app.store.db import Database
from agentz_app.store.models import Delivery, Event, Process, Run
from agentz_app.store.owners import owner_host
from agentz_app.store.runs import RunQueue

CONFIRM_WINDOW_SECONDS = 5.0

_STATUS_STYLES = {
    "queued": "cyan",
    "deferred": "dim cyan",
    "planning": "yellow",
    "awaiting_approval": "magenta",
    "ready": "bright_cyan",
    "developing": "yellow",
    "reviewing": "yellow",
    "fixing": "yellow",
    "submitting": "yellow",
    "fixing_ci": "yellow",
    "waiting_checks": "blue",
    "done": "green",
    "merged": "bold green",
    "cancelled": "dim",
    "failed": "bold red",
    "needs_human": "bold magenta",
}
_PROCESS_STYLES = {"running": "green", "starting": "cyan", "backoff": "yellow", "broken": "bold red",
                   "stopped": "dim", "dead": "bold red"}


@dataclass(frozen=True)
class ProcessView:
    """One row of the Processes pane."""

    name: str
    role: str
    state: str
    pid: str
    restarts: str
    timer: str
    host: str
    detail: str
    restart_at: float | None = None
    recent_crashes: int = 0
    started_at: float = 0.0
    heartbeat_at: float = 0.0

    @property
    def key(self) -> str:
        """``host/name``: unique across the hosts sharing the database."""
        return f"{self.host}/{self.name}"

    def cells(self) -> tuple[str, ...]:
        return (self.name, self.host, self.state, self.pid, self.restarts, self.timer)


@dataclass(frozen=True)
class TaskView:
    """One row of the Tasks pane."""

    run_id: str
    repo: str
    issue_number: int
    pr_number: int | None
    title: str
    status: str
    stage: str
    lease: str
    age: str
    pr: str
    error: str
    timer: str = "-"
    host: str = "-"

    def cells(self) -> tuple[str, ...]:
        return (self.run_id, f"#{self.issue_number}", self.status, self.stage, self.timer, self.host, self.lease,
                self.age, self.pr, self.error)


@dataclass(frozen=True)
class EventView:
    """One line of a run's event timeline."""

    offset: str
    kind: str
    transition: str
    took: str
    note: str

    def line(self) -> str:
        parts = [f"+{self.offset:>7}", self.kind]
        if self.transition:
            parts.append(self.transition)
        if self.took:
            parts.append(f"({self.took})")
        if self.note:
            parts.append(f"- {self.note}")
        return " ".join(parts)


@dataclass(frozen=True)
class TaskDetail:
    """Everything the Selected task pane shows for one run."""

    run_id: str
    heading: str
    error: str
    plan_summary: str
    plan_steps: tuple[str, ...]
    events: tuple[EventView, ...]
    log_lines: tuple[str, ...]


# Formatting ----------------------------------------------------------------


def format_duration(seconds: float | None) -> str:
    """A short human duration: ``45s``, ``4m05s``, ``2h03m``, ``3d04h``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    total = max(int(seconds), 0)
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def status_style(status: str) -> str:
    """The Rich style a run status is drawn in."""
    return _STATUS_STYLES.get(status, "")


def process_style(state: str) -> str:
    """The Rich style a process state is drawn in."""
    return _PROCESS_STYLES.get(state, "")


def short(text: str | None, limit: int = 60) -> str:
    """First line of ``text`` cut to ``limit`` characters."""
    if not text:
        return ""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def lease_text(run: Run, at: float) -> str:
    """Who holds the run's lease and for how long still, or ``-``."""
    if not run.lease_owner:
        return "-"
    if run.lease_expires_at is None:
        return run.lease_owner
    left = run.lease_expires_at - at
    if left < 0:
        return f"{run.lease_owner} (expired {format_duration(-left)} ago)"
    return f"{run.lease_owner} ({format_duration(left)})"


def process_timer(state: str, *, started_at: float, restart_at: float | None, at: float) -> str:
    """The live timer of a process: uptime, time starting, the restart countdown, or the open breaker."""
    if state == "running":
        return format_duration(at - started_at)
    if state == "starting":
        return f"starting {format_duration(at - started_at)}"
    if state == "backoff":
        return f"restart in {format_duration(restart_at - at)}" if restart_at is not None else "backoff"
    if state == "broken":
        return "breaker open"
    return "-"


def process_view(row: Process, at: float) -> ProcessView:
    """A process row as table cells."""
    alive = row.state in ("running", "starting")
    return ProcessView(
        name=row.name,
        role=row.role,
        state=row.state,
        pid=str(row.pid) if row.pid is not None and alive else "-",
        restarts=str(row.restarts),
        timer=process_timer(row.state, started_at=row.started_at, restart_at=row.restart_at, at=at),
        host=row.host,
        detail=row.detail,
        restart_at=row.restart_at,
        recent_crashes=row.recent_crashes or 0,
        started_at=row.started_at,
        heartbeat_at=row.heartbeat_at,
    )


def exit_reason(detail: str) -> str:
    """How the process last ended (``exited with code 1``, ``exited with signal SIGKILL``), from its detail."""
    return detail.split("; restart in", 1)[0].strip()


def render_process_detail(view: ProcessView | None, at: float) -> str:
    """The detail pane for a process: exit, restarts, backoff countdown and circuit-breaker state."""
    if view is None:
        return "No process selected."
    lines = [f"{view.name} on {view.host}  [{view.state}]", f"role: {view.role}  pid: {view.pid}", ""]
    lines.append(f"last exit: {exit_reason(view.detail) or '(none)'}")
    lines.append(f"restarts: {view.restarts}")
    if view.state == "running":
        lines.append(f"uptime: {format_duration(at - view.started_at)}")
    if view.state == "backoff":
        countdown = format_duration(view.restart_at - at) if view.restart_at is not None else "soon"
        lines.append(f"backoff: restart in {countdown}")
    crashes = f"{view.recent_crashes} recent crash{'es' if view.recent_crashes != 1 else ''}"
    if view.state == "broken":
        lines.append(f"circuit breaker: open ({crashes}); press r twice to restart it")
    else:
        lines.append(f"circuit breaker: closed ({crashes})")
    lines.append(f"heartbeat: {format_duration(at - view.heartbeat_at)} ago")
    return "\n".join(lines)


@dataclass(frozen=True)
class RunClock:
    """The timestamps a task's live timer is computed from (events already in the database)."""

    entered_at: float  # when the run entered its current status
    agent_role: str | None = None  # the agent call in progress, if any
    agent_started_at: float | None = None


def run_clock(run: Run, events: Sequence[Event]) -> RunClock:
    """When the run entered its status and which agent call (if any) is running, from its events in order."""
    entered = run.updated_at or run.created_at
    role: str | None = None
    started: float | None = None
    for event in events:
        if event.to_status is not None and event.to_status == run.status:
            entered = event.created_at
        if event.kind == "agent_started":
            role, started = str((event.payload or {}).get("role") or "agent"), event.created_at
        elif event.kind == "agent_call" or event.to_status is not None:
            role, started = None, None
    return RunClock(entered, role, started)


def task_timer(run: Run, clock: RunClock | None, at: float) -> str:
    """The live timer of a task: the running agent call, the CI wait, or the time in its status."""
    if run.status in TERMINAL or clock is None:
        return "-"
    if clock.agent_role is not None and clock.agent_started_at is not None:
        return f"{clock.agent_role} {format_duration(at - clock.agent_started_at)}"
    since = format_duration(at - clock.entered_at)
    if run.status == "waiting_checks":
        return f"CI {since}"
    return f"{run.status} {since}"


def task_view(run: Run, at: float, clock: RunClock | None = None) -> TaskView:
    """A run row as table cells."""
    ended = run.finished_at if run.status in TERMINAL and run.finished_at else at
    return TaskView(
        run_id=run.id,
        repo=run.repo,
        issue_number=run.issue_number,
        pr_number=run.pr_number,
        title=run.title,
        status=run.status,
        stage=run.stage or "-",
        lease=lease_text(run, at),
        age=format_duration(ended - run.created_at),
        pr=f"#{run.pr_number}" if run.pr_number else "-",
        error=short(run.error, 50),
        timer=task_timer(run, clock, at),
        host=run_host(run),
    )


def run_host(run: Run) -> str:
    """The host working on the run (its lease owner's), else the one holding its agent session, else ``-``."""
    return owner_host(run.lease_owner or "") or run.session_host or "-"


def sort_runs(runs: Iterable[Run]) -> list[Run]:
    """Live runs first, then finished ones; newest first within each group (stable order)."""
    return sorted(runs, key=lambda run: (run.status not in LIVE, -run.created_at, run.id))


def plan_lines(plan: dict[str, Any] | None) -> tuple[str, tuple[str, ...]]:
    """The plan's summary and one line per step, whatever shape the steps take."""
    if not plan:
        return "", ()
    summary = str(plan.get("summary") or plan.get("title") or plan.get("goal") or "")
    steps: list[str] = []
    for index, step in enumerate(plan.get("steps") or [], start=1):
        if isinstance(step, dict):
            text = step.get("title") or step.get("summary") or step.get("description") or step.get("name") or ""
            files = step.get("files") or []
            suffix = f" [{', '.join(str(f) for f in files[:4])}]" if isinstance(files, list) and files else ""
            steps.append(f"{index}. {text}{suffix}")
        else:
            steps.append(f"{index}. {step}")
    return summary, tuple(steps)


def event_views(events: Sequence[Event], *, started_at: float) -> tuple[EventView, ...]:
    """The run's timeline: offset from the run's start and time spent since the previous event."""
    views: list[EventView] = []
    previous = started_at
    for event in events:
        transition = f"{event.from_status or '?'} → {event.to_status}" if event.to_status else ""
        payload = event.payload or {}
        note = str(payload.get("reason") or payload.get("message") or payload.get("error") or "")
        views.append(EventView(
            offset=format_duration(event.created_at - started_at),
            kind=event.kind,
            transition=transition,
            took=format_duration(event.created_at - previous) if views else "",
            note=short(note, 80),
        ))
        previous = event.created_at
    return tuple(views)


def web_base_for(api_url: str) -> str:
    """GitHub's web address for an API address (github.com, or a GHES host's root)."""
    api_url = api_url.rstrip("/")
    if api_url in ("https://api.github.com", "http://api.github.com"):
        return "https://github.com"
    if api_url.endswith("/api/v3"):
        return api_url[: -len("/api/v3")]
    return api_url


def target_url(web_base: str, repo: str, issue_number: int, pr_number: int | None) -> str:
    """The web URL of the run's pull request, or of its issue when there is no PR yet."""
    base = web_base.rstrip("/")
    if pr_number:
        return f"{base}/{repo}/pull/{pr_number}"
    return f"{base}/{repo}/issues/{issue_number}"


def tail_lines(path: Path, count: int, *, max_bytes: int = 64 * 1024) -> list[str]:
    """The last ``count`` lines of a text file, reading at most ``max_bytes`` from its end."""
    with path.open("rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(size - max_bytes, 0))
        data = handle.read()
    lines = data.decode("utf-8", errors="replace").splitlines()
    if size > max_bytes and lines:
        lines = lines[1:]  # first line is probably cut
    return lines[-count:] if count > 0 else []


def run_log_tail(logs_dir: Path, run_id: str, count: int) -> tuple[str, ...]:
    """The end of each of the run's log files (``<logs_dir>/runs/<run_id>/*.log``), oldest file first."""
    folder = logs_dir / "runs" / run_id
    if not folder.is_dir():
        return ()
    files = sorted(folder.glob("*.log"), key=lambda path: (path.stat().st_mtime, path.name))
    out: list[str] = []
    for path in files:
        out.append(f"── {path.name}")
        out.extend(tail_lines(path, count))
    return tuple(out)


class DoublePress:
    """Confirm a destructive key by a second press of the same key on the same target in time."""

    def __init__(self, window: float = CONFIRM_WINDOW_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.window = window
        self.clock = clock
        self._armed: tuple[str, str, float] | None = None

    def press(self, action: str, target: str) -> bool:
        """True when this press confirms an earlier one; otherwise arm and return False."""
        at = self.clock()
        armed = self._armed
        if armed is not None and armed[:2] == (action, target) and at - armed[2] <= self.window:
            self._armed = None
            return True
        self._armed = (action, target, at)
        return False

    @property
    def pending(self) -> bool:
        """True while a first press waits for its confirmation."""
        return self._armed is not None and self.clock() - self._armed[2] <= self.window


def confirm_hint(key: str, verb: str, what: str, window: float = CONFIRM_WINDOW_SECONDS) -> str:
    """The hint shown after a first press: ``press c again within 5s to cancel run X``."""
    return f"press {key} again within {window:.0f}s to {verb} {what}"


# Database readers (read transactions only) ----------------------------------


def load_processes(db: Database, at: float) -> list[ProcessView]:
    """Every supervised process, by name, then host."""
    with db.read() as session:
        rows = list(session.scalars(select(Process).order_by(Process.name, Process.host)))
    return [process_view(row, at) for row in rows]


def load_dead_deliveries(db: Database) -> int:
    """How many webhook deliveries are dead (waiting for ``agentz deliveries retry``)."""
    with db.read() as session:
        count = session.scalar(select(func.count()).select_from(Delivery).where(
            Delivery.dead_at.is_not(None), Delivery.processed_at.is_(None)))
    return int(count or 0)


def processes_title(dead_deliveries: int) -> str:
    """The Processes pane's title; it names dead deliveries when there are any."""
    if dead_deliveries <= 0:
        return "Processes"
    noun = "delivery" if dead_deliveries == 1 else "deliveries"
    return f"Processes · {dead_deliveries} dead {noun} (agentz deliveries list --dead)"


def load_tasks(db: Database, at: float, *, limit: int = 200) -> list[TaskView]:
    """Live runs (with their live timers) and the most recent finished ones."""
    with db.read() as session:
        live = list(session.scalars(select(Run).where(Run.status.in_([str(s) for s in LIVE]))))
        done = list(session.scalars(
            select(Run).where(Run.status.in_([str(s) for s in TERMINAL]))
            .order_by(Run.created_at.desc()).limit(max(limit - len(live), 0))
        ))
        timed = list(session.scalars(
            select(Event).where(Event.run_id.in_([run.id for run in live]),
                                Event.kind.in_(["agent_started", "agent_call"]) | Event.to_status.is_not(None))
            .order_by(Event.created_at, Event.id)
        )) if live else []
    by_run: dict[str, list[Event]] = {}
    for event in timed:
        by_run.setdefault(str(event.run_id), []).append(event)
    clocks = {run.id: run_clock(run, by_run.get(run.id, [])) for run in live}
    return [task_view(run, at, clocks.get(run.id)) for run in sort_runs(live + done)[:limit]]


def load_dashboard(db: Database, at: float) -> tuple[list[ProcessView], list[TaskView], int]:
    """The processes, the tasks and the number of dead deliveries, for one refresh."""
    return load_processes(db, at), load_tasks(db, at), load_dead_deliveries(db)


def load_detail(db: Database, run_id: str, logs_dir: Path, *, log_lines: int = 20) -> TaskDetail | None:
    """The Selected task pane's content, or None when the run is gone."""
    with db.read() as session:
        run = session.get(Run, run_id)
        if run is None:
            return None
        events = list(session.scalars(
            select(Event).where(Event.run_id == run_id).order_by(Event.created_at, Event.id)
        ))
        summary, steps = plan_lines(run.plan)
        heading = f"{run.id}  {run.repo}#{run.issue_number}  [{run.status}]  {run.title}".rstrip()
        error = run.error or ""
        timeline = event_views(events, started_at=run.created_at)
    return TaskDetail(
        run_id=run_id,
        heading=heading,
        error=error,
        plan_summary=summary,
        plan_steps=steps,
        events=timeline,
        log_lines=run_log_tail(logs_dir, run_id, log_lines),
    )


def render_detail(detail: TaskDetail | None, *, expanded: bool) -> str:
    """The Selected task pane as plain text; collapsed shows the last few events and log lines."""
    if detail is None:
        return "No task selected."
    lines = [detail.heading]
    if detail.error:
        lines.append(f"Error: {detail.error}")
    lines.append("")
    lines.append("Plan: " + (detail.plan_summary or "(none yet)"))
    steps = detail.plan_steps if expanded else detail.plan_steps[:3]
    lines.extend("  " + step for step in steps)
    if len(steps) < len(detail.plan_steps):
        lines.append(f"  … {len(detail.plan_steps) - len(steps)} more steps (Enter to expand)")
    lines.append("")
    lines.append("Events:")
    events = detail.events if expanded else detail.events[-5:]
    if len(events) < len(detail.events):
        lines.append(f"  … {len(detail.events) - len(events)} earlier events (Enter to expand)")
    lines.extend("  " + event.line() for event in events)
    lines.append("")
    lines.append("Log:")
    log = detail.log_lines if expanded else detail.log_lines[-8:]
    if log:
        lines.extend("  " + line for line in log)
    else:
        lines.append("  (no log yet)")
    return "\n".join(lines)


class RunFinished(AgentZError):
    """The run already ended: there is nothing to cancel."""


def cancel_from_dashboard(db: Database, run_id: str) -> Run:
    """The dashboard's ``c c``: cancel the run; workers show it on GitHub (labels, status comment, checks).

    A run that already ended is left as it is (:class:`RunFinished`).
    """
    queue = RunQueue(db)
    run = queue.reads.get(run_id)
    if run.status in TERMINAL:
        raise RunFinished(f"run {run_id} already finished ({run.status}); nothing to cancel")
    return queue.moves.cancel(run_id, reason="cancelled from the dashboard", actor="operator")
