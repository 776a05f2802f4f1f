"""The Textual dashboard shown by ``agentz serve`` on a terminal and by ``agentz top``.

Panes: Processes, Tasks and the detail pane (the selected task, or the selected process
while the Processes pane is active: last exit, restarts, backoff countdown, circuit
breaker). Each task and process shows a live timer: the running agent call, the CI wait
or the time in its status; a process's uptime or restart countdown. Keys (listed in the
footer): Tab switches panes; j/k or the arrows select; Enter/Space expands the selected
task's details; ``o`` opens its PR (or issue); ``c`` twice cancels the selected run (a
finished run is left alone), ``r`` twice restarts the selected process, ``q`` twice quits.
A second press must come within 5 s.

Selection is kept by run id and process (host and name), so rows may move or appear while
the data refreshes (every ``refresh_seconds``, read transactions only). Every read and write
runs on a database thread (``Database.run``), so the screen never waits for the database.
"""

from __future__ import annotations

import inspect
import time
import webbrowser
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from sqlalchemy.exc import SQLAlchemyError
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Footer, Static

from agentz_app.config import SANDBOX_WARNING, Settings
from agentz_app.domain.states import TERMINAL
from agentz_app.errors import AgentZError
from agentz_app.store.db import Database
from agentz_app.store.models import now
from agentz_app.store.restart_requests import request_restart
from agentz_app.supervisor import Supervisor
from agentz_app.tui.data import (
    CONFIRM_WINDOW_SECONDS,
    DoublePress,
    ProcessView,
    TaskView,
    cancel_from_dashboard,
    confirm_hint,
    load_dashboard,
    load_detail,
    process_style,
    processes_title,
    render_detail,
    render_process_detail,
    status_style,
    target_url,
    web_base_for,
)

PANES = ("processes", "tasks", "details")
Opener = Callable[[str], Any]


def _pick(keys: Sequence[str], current: str | None, previous_index: int) -> tuple[str | None, int]:
    """Keep ``current`` when it is still listed, else the row now at its old index."""
    if not keys:
        return None, 0
    if current in keys:
        return current, keys.index(current)
    index = min(max(previous_index, 0), len(keys) - 1)
    return keys[index], index


class Dashboard(App[None]):
    """Agent-Z's operator dashboard over the database."""

    TITLE = "Agent-Z"
    CSS = """
    Screen { layout: vertical; }
    .pane { border: round $panel; height: 1fr; }
    .pane.active { border: round $accent; }
    #processes-pane { height: 10; }
    #details-pane { height: 2fr; }
    #hint { height: 1; background: $boost; padding: 0 1; }
    #warning { height: auto; background: $error; color: $text; padding: 0 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("tab", "next_pane", "Pane", priority=True),
        Binding("j,down", "move(1)", "Down", priority=True),
        Binding("k,up", "move(-1)", "Up", priority=True),
        Binding("enter,space", "toggle_expand", "Expand", priority=True),
        Binding("o", "open_target", "Open", priority=True),
        Binding("c", "cancel_run", "Cancel run (twice)", priority=True),
        Binding("r", "restart_process", "Restart process (twice)", priority=True),
        Binding("q", "quit_twice", "Quit (twice)", priority=True),
    ]

    def __init__(
        self,
        db: Database,
        *,
        logs_dir: Path,
        web_base: str = "https://github.com",
        opener: Opener = webbrowser.open,
        cancel_run: Callable[[str], Any] | None = None,
        restart_process: Callable[[ProcessView], Any] | None = None,
        on_quit: Callable[[], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = now,
        refresh_seconds: float = 1.0,
        quit_verb: str = "quit",
        warning: str | None = None,
    ) -> None:
        super().__init__()
        self.warning = warning
        self.db = db
        self.logs_dir = logs_dir
        self.web_base = web_base
        self.opener = opener
        self._cancel_run = cancel_run or (lambda run_id: db.run(cancel_from_dashboard, db, run_id))
        self._restart_process = restart_process or (
            lambda view: db.run(request_restart, db, view.name, host=view.host))
        self._on_quit = on_quit
        self.clock = clock
        self.wall_clock = wall_clock
        self.refresh_seconds = refresh_seconds
        self.quit_verb = quit_verb
        self.confirm = DoublePress(CONFIRM_WINDOW_SECONDS, clock)
        self.active_pane = "tasks"
        self.expanded = False
        self.processes: list[ProcessView] = []
        self.tasks: list[TaskView] = []
        self.selected_process: str | None = None
        self.selected_run: str | None = None
        self._process_index = 0
        self._task_index = 0
        self._hint_at: float | None = None

    # Layout -----------------------------------------------------------------

    def compose(self) -> ComposeResult:
        if self.warning:
            yield Static(f"⚠ {self.warning}", id="warning")
        with Vertical(id="processes-pane", classes="pane"):
            yield DataTable(id="processes", cursor_type="row", zebra_stripes=True)
        with Vertical(id="tasks-pane", classes="pane active"):
            yield DataTable(id="tasks", cursor_type="row", zebra_stripes=True)
        with VerticalScroll(id="details-pane", classes="pane"):
            yield Static("No task selected.", id="details")
        yield Static("", id="hint")
        yield Footer()

    async def on_mount(self) -> None:
        processes = self.query_one("#processes", DataTable)
        processes.add_columns("name", "host", "state", "pid", "restarts", "timer")
        tasks = self.query_one("#tasks", DataTable)
        tasks.add_columns("run", "issue", "status", "stage", "timer", "host", "lease", "age", "PR", "error")
        for table in (processes, tasks):
            table.can_focus = False
        self.query_one("#processes-pane").border_title = "Processes"
        self.query_one("#tasks-pane").border_title = "Tasks"
        self.query_one("#details-pane").border_title = "Selected task"
        await self.refresh_data()
        self.set_interval(self.refresh_seconds, self.refresh_data)

    # Data -------------------------------------------------------------------

    async def refresh_data(self) -> None:
        """Re-read processes, tasks and the selected task's details from the database."""
        at = self.wall_clock()
        try:
            self.processes, self.tasks, dead = await self.db.run(load_dashboard, self.db, at)
            self.query_one("#processes-pane").border_title = processes_title(dead)
        except SQLAlchemyError as exc:  # keep the dashboard up while the database is unreachable
            self.show_hint(f"database unavailable: {exc.__class__.__name__}")
            return
        self.selected_process, self._process_index = _pick(
            [p.key for p in self.processes], self.selected_process, self._process_index)
        self.selected_run, self._task_index = _pick(
            [t.run_id for t in self.tasks], self.selected_run, self._task_index)
        self._fill_processes()
        self._fill_tasks()
        await self._fill_details()
        if self._hint_at is not None and self.clock() - self._hint_at > CONFIRM_WINDOW_SECONDS:
            self.show_hint("")

    def _fill_processes(self) -> None:
        table = self.query_one("#processes", DataTable)
        table.clear()
        for view in self.processes:
            cells: list[Any] = list(view.cells())
            cells[2] = Text(view.state, style=process_style(view.state))
            table.add_row(*cells, key=view.key)
        if self.processes:
            table.move_cursor(row=self._process_index, animate=False)

    def _fill_tasks(self) -> None:
        table = self.query_one("#tasks", DataTable)
        table.clear()
        for view in self.tasks:
            style = status_style(view.status)
            table.add_row(*(Text(cell, style=style) for cell in view.cells()), key=view.run_id)
        if self.tasks:
            table.move_cursor(row=self._task_index, animate=False)

    async def _fill_details(self) -> None:
        pane = self.query_one("#details-pane")
        if self.active_pane == "processes":
            pane.border_title = "Selected process"
            text = render_process_detail(self.selected_process_view(), self.wall_clock())
        else:
            pane.border_title = "Selected task"
            run_id = self.selected_run
            detail = await self.db.run(load_detail, self.db, run_id, self.logs_dir) if run_id else None
            text = render_detail(detail, expanded=self.expanded)
        self.query_one("#details", Static).update(Text(text))

    def show_hint(self, text: str) -> None:
        """Show ``text`` in the hint line (cleared on a later refresh)."""
        self._hint_at = self.clock() if text else None
        self.query_one("#hint", Static).update(text)

    @property
    def hint(self) -> str:
        return str(self.query_one("#hint", Static).content)

    def selected_task(self) -> TaskView | None:
        return next((t for t in self.tasks if t.run_id == self.selected_run), None)

    def selected_process_view(self) -> ProcessView | None:
        return next((p for p in self.processes if p.key == self.selected_process), None)

    # Actions ----------------------------------------------------------------

    async def action_next_pane(self) -> None:
        self.active_pane = PANES[(PANES.index(self.active_pane) + 1) % len(PANES)]
        for pane in PANES:
            self.query_one(f"#{pane}-pane").set_class(pane == self.active_pane, "active")
        if self.active_pane != "details":
            await self._fill_details()

    async def action_move(self, step: int) -> None:
        if self.active_pane == "processes" and self.processes:
            self._process_index = min(max(self._process_index + step, 0), len(self.processes) - 1)
            self.selected_process = self.processes[self._process_index].key
            self.query_one("#processes", DataTable).move_cursor(row=self._process_index, animate=False)
            await self._fill_details()
        elif self.active_pane == "tasks" and self.tasks:
            self._task_index = min(max(self._task_index + step, 0), len(self.tasks) - 1)
            self.selected_run = self.tasks[self._task_index].run_id
            self.query_one("#tasks", DataTable).move_cursor(row=self._task_index, animate=False)
            await self._fill_details()
        elif self.active_pane == "details":
            pane = self.query_one("#details-pane", VerticalScroll)
            pane.scroll_relative(y=step * 3, animate=False)

    async def action_toggle_expand(self) -> None:
        self.expanded = not self.expanded
        await self._fill_details()

    def action_open_target(self) -> None:
        task = self.selected_task()
        if task is None:
            self.show_hint("no task selected")
            return
        url = target_url(self.web_base, task.repo, task.issue_number, task.pr_number)
        self.opener(url)
        self.show_hint(f"opened {url}")

    async def action_cancel_run(self) -> None:
        run_id = self.selected_run
        if run_id is None:
            self.show_hint("no task selected")
            return
        task = self.selected_task()
        if task is not None and task.status in TERMINAL:
            self.show_hint(f"run {run_id} already finished ({task.status}); nothing to cancel")
            return
        if not self.confirm.press("c", run_id):
            self.show_hint(confirm_hint("c", "cancel run", run_id))
            return
        try:
            await _completed(self._cancel_run(run_id))
        except AgentZError as exc:
            self.show_hint(f"cannot cancel {run_id}: {exc}")
            return
        self.show_hint(f"cancelled run {run_id}")
        await self.refresh_data()

    async def action_restart_process(self) -> None:
        view = self.selected_process_view()
        if view is None:
            self.show_hint("no process selected")
            return
        what = f"{view.name} on {view.host}"
        if not self.confirm.press("r", view.key):
            self.show_hint(confirm_hint("r", "restart", what))
            return
        await _completed(self._restart_process(view))
        self.show_hint(f"restart of {what} requested")

    def action_quit_twice(self) -> None:
        if not self.confirm.press("q", "dashboard"):
            self.show_hint(confirm_hint("q", self.quit_verb, "").rstrip())
            return
        if self._on_quit is not None:
            self._on_quit()
        self.exit()


async def _completed(outcome: Any) -> Any:
    """The outcome of a callback that may be a coroutine function or a plain one."""
    return await outcome if inspect.isawaitable(outcome) else outcome


def supervisor_dashboard(supervisor: Supervisor, db: Database, settings: Settings, *,
                         web_base: str | None = None) -> Dashboard:
    """The dashboard of ``agentz serve``: ``r r`` restarts this host's children in-process
    (others through their own supervisor), ``q q`` stops everything."""

    async def restart(view: ProcessView) -> None:
        if view.host == supervisor.host and view.name in supervisor.names:
            supervisor.restart(view.name)  # on the loop: the supervisor's events are not thread-safe
        else:
            await db.run(request_restart, db, view.name, host=view.host)

    return Dashboard(
        db,
        logs_dir=settings.logs_dir,
        web_base=web_base or web_base_for(settings.github_api_url),
        restart_process=restart,
        on_quit=supervisor.stop,
        quit_verb="stop everything",
        warning=SANDBOX_WARNING if settings.agent_sandbox == "none" else None,
    )


def run_top(db: Database, settings: Settings, *, web_base: str | None = None) -> None:
    """``agentz top``: the dashboard over the configured database; ``q q`` only exits."""
    Dashboard(db, logs_dir=settings.logs_dir, web_base=web_base or web_base_for(settings.github_api_url),
              warning=SANDBOX_WARNING if settings.agent_sandbox == "none" else None).run()
