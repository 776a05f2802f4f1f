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

from agentz_app.store.db import Database
from agentz_app.store.models import Delivery, Event, Process, Run
from agentz_app.store.runs import RunQueue
from agentz_app.store.states import LIVE, TERMINAL

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
                   "stopped": "dim"}


@dataclass(frozen=True)
class ProcessView:
    """One row of the Processes pane."""

    name: str
    role: str
    state: str
    pid: str
    restarts: str
    uptime: str
    host: str
    detail: str

    @property
    def key(self) -> str:
        """``host/name``: unique across the hosts sharing the database."""
        return f"{self.host}/{self.name}"

    def cells(self) -> tuple[str, ...]:
        return (self.name, self.host, self.state, self.pid, self.restarts, self.uptime)


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

    def cells(self) -> tuple[str, ...]:
        return (self.run_id, f"#{self.issue_number}", self.status, self.stage, self.lease, self.age, self.pr,
                self.error)


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


def process_view(row: Process, at: float) -> ProcessView:
    """A process row as table cells."""
    alive = row.state in ("running", "starting")
    return ProcessView(
        name=row.name,
        role=row.role,
        state=row.state,
        pid=str(row.pid) if row.pid is not None and alive else "-",
        restarts=str(row.restarts),
        uptime=format_duration(at - row.started_at) if row.state == "running" else "-",
        host=row.host,
        detail=row.detail,
    )


def task_view(run: Run, at: float) -> TaskView:
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
    )


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
    """Live runs and the most recent finished ones."""
    with db.read() as session:
        live = list(session.scalars(select(Run).where(Run.status.in_([str(s) for s in LIVE]))))
        done = list(session.scalars(
            select(Run).where(Run.status.in_([str(s) for s in TERMINAL]))
            .order_by(Run.created_at.desc()).limit(max(limit - len(live), 0))
        ))
    return [task_view(run, at) for run in sort_runs(live + done)[:limit]]


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


def cancel_from_dashboard(db: Database, run_id: str) -> Run:
    """The dashboard's ``c c``: cancel the run; workers show it on GitHub (labels, status comment, checks)."""
    return RunQueue(db).cancel(run_id, reason="cancelled from the dashboard", actor="operator")
