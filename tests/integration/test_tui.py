"""The dashboard driven with Textual's pilot against a real SQLite database."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable, Static

from agentz_app.store.db import Database
from agentz_app.store.models import Delivery, Event, Process, Run
from agentz_app.store.restart_requests import pending_restarts
from agentz_app.tui.app import Dashboard
from tests.fakes import FakeClock

REPO = "octo/widgets"


def _seed(db: Database) -> None:
    with db.begin() as session:
        session.add_all([
            Process(name="receiver", role="receiver", pid=101, host="h", state="running", started_at=100.0),
            Process(name="worker-1", role="worker", pid=None, host="h", state="broken", restarts=6),
            Run(id="aaaa1111", repo=REPO, issue_number=7, title="Fix the parser", status="developing",
                stage="develop", lease_owner="worker-1", lease_expires_at=9e9, created_at=300.0,
                plan={"summary": "Rewrite the tokenizer", "steps": [{"title": "add tests"}, "fix it"]}),
            Run(id="bbbb2222", repo=REPO, issue_number=8, title="Docs", status="waiting_checks",
                pr_number=42, created_at=200.0),
            Run(id="cccc3333", repo=REPO, issue_number=9, title="Old", status="done", pr_number=40,
                created_at=100.0, finished_at=150.0),
        ])
        session.add_all([
            Event(run_id="aaaa1111", kind="transition", from_status="queued", to_status="planning",
                  created_at=310.0),
            Event(run_id="aaaa1111", kind="transition", from_status="planning", to_status="ready",
                  created_at=370.0),
        ])


def _status(db: Database, run_id: str) -> str:
    with db.read() as session:
        run = session.get(Run, run_id)
        assert run is not None
        return run.status


@pytest.fixture
def seeded(sqlite_db: Database) -> Database:
    _seed(sqlite_db)
    return sqlite_db


def _app(db: Database, tmp_path: Path, clock: FakeClock, opened: list[str] | None = None,
         **kwargs: object) -> Dashboard:
    return Dashboard(db, logs_dir=tmp_path / "logs", web_base="https://git.example",
                     opener=(opened.append if opened is not None else lambda url: None),
                     clock=clock, wall_clock=lambda: 1000.0, refresh_seconds=3600, **kwargs)  # type: ignore[arg-type]


async def test_tables_show_processes_and_live_runs_first(seeded: Database, tmp_path: Path) -> None:
    app = _app(seeded, tmp_path, FakeClock(1000.0))
    async with app.run_test(size=(160, 50)):
        assert [p.name for p in app.processes] == ["receiver", "worker-1"]
        assert [t.run_id for t in app.tasks] == ["aaaa1111", "bbbb2222", "cccc3333"]
        assert app.selected_run == "aaaa1111"
        details = str(app.query_one("#details", Static).content)
        assert "Rewrite the tokenizer" in details
        assert "planning → ready (1m00s)" in details


async def test_the_processes_pane_title_counts_dead_deliveries(seeded: Database, tmp_path: Path) -> None:
    app = _app(seeded, tmp_path, FakeClock(1000.0))
    async with app.run_test(size=(160, 50)):
        assert app.query_one("#processes-pane").border_title == "Processes"
        with seeded.begin() as session:
            session.add_all([Delivery(delivery_id=f"d{i}", event="issues", payload="{}", attempts=8, error="boom",
                                      dead_at=900.0) for i in range(3)])
        await app.refresh_data()
        assert app.query_one("#processes-pane").border_title == (
            "Processes · 3 dead deliveries (agentz deliveries list --dead)")


async def test_o_opens_the_issue_then_the_pull_request(seeded: Database, tmp_path: Path) -> None:
    opened: list[str] = []
    app = _app(seeded, tmp_path, FakeClock(1000.0), opened)
    async with app.run_test() as pilot:
        await pilot.press("o")
        await pilot.press("j", "o")
        await pilot.press("down", "o")
        await pilot.press("k", "up", "o")
    assert opened == [
        "https://git.example/octo/widgets/issues/7",
        "https://git.example/octo/widgets/pull/42",
        "https://git.example/octo/widgets/pull/40",
        "https://git.example/octo/widgets/issues/7",
    ]


async def test_c_twice_within_five_seconds_cancels_the_selected_run(seeded: Database, tmp_path: Path) -> None:
    clock = FakeClock(1000.0)
    app = _app(seeded, tmp_path, clock)
    async with app.run_test() as pilot:
        await pilot.press("c")
        assert app.hint == "press c again within 5s to cancel run aaaa1111"
        assert _status(seeded, "aaaa1111") == "developing"
        clock.now += 4.0
        await pilot.press("c")
        assert _status(seeded, "aaaa1111") == "cancelled"
        assert app.hint == "cancelled run aaaa1111"


async def test_a_late_second_c_does_nothing_but_ask_again(seeded: Database, tmp_path: Path) -> None:
    clock = FakeClock(1000.0)
    app = _app(seeded, tmp_path, clock)
    async with app.run_test() as pilot:
        await pilot.press("c")
        clock.now += 5.5
        await pilot.press("c")
        assert _status(seeded, "aaaa1111") == "developing"
        assert app.hint == "press c again within 5s to cancel run aaaa1111"


async def test_c_then_c_on_another_run_cancels_nothing(seeded: Database, tmp_path: Path) -> None:
    app = _app(seeded, tmp_path, FakeClock(1000.0))
    async with app.run_test() as pilot:
        await pilot.press("c", "j", "c")
        assert _status(seeded, "aaaa1111") == "developing"
        assert _status(seeded, "bbbb2222") == "waiting_checks"
        assert app.hint == "press c again within 5s to cancel run bbbb2222"


async def test_selection_follows_the_run_when_rows_move(seeded: Database, tmp_path: Path) -> None:
    app = _app(seeded, tmp_path, FakeClock(1000.0))
    async with app.run_test() as pilot:
        await pilot.press("j")
        assert app.selected_run == "bbbb2222"
        with seeded.begin() as session:
            session.add(Run(id="dddd4444", repo=REPO, issue_number=10, status="queued", created_at=900.0))
        await app.refresh_data()
        await pilot.pause()
        assert app.tasks[0].run_id == "dddd4444"
        assert app.selected_run == "bbbb2222"
        table = app.query_one("#tasks", DataTable)
        assert table.cursor_row == 2
        await pilot.press("j")
        assert app.selected_run == "cccc3333"


async def test_r_twice_on_the_processes_pane_requests_a_restart(seeded: Database, tmp_path: Path) -> None:
    clock = FakeClock(1000.0)
    app = _app(seeded, tmp_path, clock)
    async with app.run_test() as pilot:
        await pilot.press("tab", "tab")
        assert app.active_pane == "processes"
        await pilot.press("j", "r")
        assert app.hint == "press r again within 5s to restart worker-1 on h"
        await pilot.press("r")
    assert pending_restarts(seeded) == [("h", "worker-1")]


async def test_q_twice_quits_and_once_does_not(seeded: Database, tmp_path: Path) -> None:
    clock = FakeClock(1000.0)
    quits: list[bool] = []
    app = _app(seeded, tmp_path, clock, on_quit=lambda: quits.append(True))
    async with app.run_test() as pilot:
        await pilot.press("q")
        clock.now += 6
        await pilot.press("q")
        assert quits == []
        assert app.is_running
        await pilot.press("q")
        await pilot.pause()
    assert quits == [True]


async def test_enter_expands_the_details_with_the_run_log(seeded: Database, tmp_path: Path) -> None:
    log_dir = tmp_path / "logs" / "runs" / "aaaa1111"
    log_dir.mkdir(parents=True)
    (log_dir / "develop.log").write_text("".join(f"line {n}\n" for n in range(30)))
    app = _app(seeded, tmp_path, FakeClock(1000.0))
    async with app.run_test() as pilot:
        collapsed = str(app.query_one("#details", Static).content)
        assert "line 29" in collapsed
        assert "line 15" not in collapsed
        await pilot.press("enter")
        expanded = str(app.query_one("#details", Static).content)
        assert "line 15" in expanded
        assert "develop.log" in expanded
        await pilot.press("space")
        assert str(app.query_one("#details", Static).content) == collapsed


async def test_the_serve_dashboard_restarts_local_children_in_process_and_asks_other_hosts(
    seeded: Database, tmp_path: Path
) -> None:
    from agentz_app.config import Settings
    from agentz_app.supervisor import ProcessSpec, Supervisor
    from agentz_app.tui.app import supervisor_dashboard
    from agentz_app.tui.data import load_processes

    supervisor = Supervisor([ProcessSpec("worker-1", "worker", ("true",))], seeded, tmp_path / "logs", host="h")
    settings = Settings.load(None, state_dir=tmp_path / "state", database_url=f"sqlite:///{tmp_path / 'x.db'}")
    dashboard = supervisor_dashboard(supervisor, seeded, settings)
    with seeded.begin() as session:
        session.add(Process(name="worker-1", role="worker", host="other", state="running"))
    views = {view.key: view for view in load_processes(seeded, 1000.0)}

    await dashboard._restart_process(views["h/worker-1"])
    await dashboard._restart_process(views["other/worker-1"])

    assert supervisor._children["worker-1"].restart.is_set()
    assert pending_restarts(seeded) == [("other", "worker-1")]


def _task_cells(app: Dashboard, run_id: str) -> list[str]:
    table = app.query_one("#tasks", DataTable)
    return [str(cell) for cell in table.get_row(run_id)]


async def test_tasks_show_live_timers_for_an_agent_call_and_a_ci_wait(seeded: Database, tmp_path: Path) -> None:
    with seeded.begin() as session:
        session.add_all([
            Event(run_id="aaaa1111", kind="transition", from_status="ready", to_status="developing",
                  created_at=880.0),
            Event(run_id="aaaa1111", kind="agent_started", payload={"role": "developer"}, created_at=900.0),
            Event(run_id="bbbb2222", kind="transition", from_status="submitting", to_status="waiting_checks",
                  created_at=700.0),
        ])
    now = [1000.0]
    app = Dashboard(seeded, logs_dir=tmp_path / "logs", clock=FakeClock(1000.0), wall_clock=lambda: now[0],
                    refresh_seconds=3600)
    async with app.run_test(size=(200, 50)):
        assert _task_cells(app, "aaaa1111")[4] == "developer 1m40s"
        assert _task_cells(app, "bbbb2222")[4] == "CI 5m00s"
        assert _task_cells(app, "cccc3333")[4] == "-"
        now[0] = 1010.0
        await app.refresh_data()
        assert _task_cells(app, "aaaa1111")[4] == "developer 1m50s"


async def test_the_detail_pane_shows_the_selected_process_with_its_breaker_and_countdown(
        seeded: Database, tmp_path: Path) -> None:
    with seeded.begin() as session:
        session.add(Process(name="worker-2", role="worker", host="h", state="backoff", restarts=2,
                            detail="exited with signal SIGKILL; restart in 8s", restart_at=1008.0,
                            recent_crashes=2, heartbeat_at=999.0))
    app = _app(seeded, tmp_path, FakeClock(1000.0))
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.press("tab", "tab")
        assert app.active_pane == "processes"
        assert app.query_one("#details-pane").border_title == "Selected process"

        def details() -> str:
            return str(app.query_one("#details", Static).content)

        assert "receiver on h  [running]" in details()
        await pilot.press("j")
        assert "circuit breaker: open (0 recent crashes); press r twice to restart it" in details()
        await pilot.press("j")
        assert "last exit: exited with signal SIGKILL" in details()
        assert "backoff: restart in 8s" in details()
        assert "circuit breaker: closed (2 recent crashes)" in details()
        processes = app.query_one("#processes", DataTable)
        assert str(processes.get_row("h/worker-2")[5]) == "restart in 8s"
        await pilot.press("tab")
        assert app.query_one("#details-pane").border_title == "Selected task"
        assert "Rewrite the tokenizer" in details()


async def test_the_footer_lists_the_keys(seeded: Database, tmp_path: Path) -> None:
    from textual.widgets._footer import FooterKey

    app = _app(seeded, tmp_path, FakeClock(1000.0))
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.pause()
        keys = {(key.key, key.description) for key in app.query(FooterKey)}
    assert {("tab", "Pane"), ("o", "Open"), ("c", "Cancel run (twice)"), ("r", "Restart process (twice)"),
            ("q", "Quit (twice)")} <= keys


async def test_c_c_on_a_finished_run_says_it_is_finished_and_does_nothing(seeded: Database, tmp_path: Path) -> None:
    cancelled: list[str] = []
    app = _app(seeded, tmp_path, FakeClock(1000.0), cancel_run=cancelled.append)
    async with app.run_test() as pilot:
        await pilot.press("j", "j")
        assert app.selected_run == "cccc3333"
        await pilot.press("c", "c")
        assert app.hint == "run cccc3333 already finished (done); nothing to cancel"
    assert cancelled == []
    assert _status(seeded, "cccc3333") == "done"


def test_cancel_from_dashboard_leaves_a_finished_run_alone(seeded: Database) -> None:
    from agentz_app.tui.data import RunFinished, cancel_from_dashboard

    with pytest.raises(RunFinished, match="already finished"):
        cancel_from_dashboard(seeded, "cccc3333")
    assert _status(seeded, "cccc3333") == "done"
    assert cancel_from_dashboard(seeded, "bbbb2222").status == "cancelled"
