"""The supervisor against real child processes and a real SQLite database."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from agentz_app.store.db import Database
from agentz_app.store.models import Process
from agentz_app.store.restart_requests import pending_restarts, request_restart
from agentz_app.supervisor import (
    ProcessSpec,
    RestartPolicy,
    Supervisor,
)
from tests.fakehub_fixtures import make_private_key
from tests.waiting import wait_for

UNTIL_SECONDS = 30.0  # how long a supervised state may take to show
SLEEPER = "import time, sys\nprint('hello from', sys.argv[1], flush=True)\nwhile True: time.sleep(0.05)\n"
CRASHER = "import sys\nprint('crashing', flush=True)\nsys.exit(3)\n"
STUBBORN = (
    "import signal, subprocess, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time\\nwhile True: time.sleep(0.05)'])\n"
    "print(child.pid, flush=True)\n"
    "while True: time.sleep(0.05)\n"
)


def _spec(tmp_path: Path, name: str, source: str) -> ProcessSpec:
    script = tmp_path / f"{name}.py"
    script.write_text(source)
    return ProcessSpec(name, "worker", (sys.executable, str(script), name))


def _rows(db: Database) -> dict[str, Process]:
    with db.read() as session:
        return {row.name: row for row in session.scalars(select(Process))}


async def _until(what: str, check: Callable[[], bool]) -> None:
    await wait_for(check, timeout=UNTIL_SECONDS, what=what)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


async def test_children_run_are_recorded_and_stop_on_request(tmp_path: Path, sqlite_db: Database) -> None:
    specs = [_spec(tmp_path, "alpha", SLEEPER), _spec(tmp_path, "beta", SLEEPER)]
    sup = Supervisor(specs, sqlite_db, tmp_path / "logs", poll_interval=0.05, grace_seconds=2.0)
    task = asyncio.create_task(sup.run())
    await _until("both children running", lambda: all(row.state == "running" for row in _rows(sqlite_db).values())
                 and len(_rows(sqlite_db)) == 2)
    await _until("beta's greeting in its log", lambda: (tmp_path / "logs" / "beta.log").exists()
                 and "hello from beta" in (tmp_path / "logs" / "beta.log").read_text())
    pids = [row.pid for row in _rows(sqlite_db).values()]
    assert all(pid is not None and _alive(pid) for pid in pids)

    sup.stop()
    await asyncio.wait_for(task, 10)
    rows = _rows(sqlite_db)
    assert {row.state for row in rows.values()} == {"stopped"}
    assert all(row.pid is None for row in rows.values())
    assert not any(_alive(pid) for pid in pids if pid is not None)


async def test_a_crashing_child_backs_off_then_the_breaker_leaves_it_broken(
    tmp_path: Path, sqlite_db: Database
) -> None:
    policy = RestartPolicy(base_delay=0.01, max_delay=0.05, max_crashes=2, crash_window=60.0)
    sup = Supervisor([_spec(tmp_path, "crashy", CRASHER)], sqlite_db, tmp_path / "logs",
                     policy=policy, poll_interval=0.05, heartbeat_interval=0.0)
    task = asyncio.create_task(sup.run())
    await _until("crashy recorded as broken", lambda: sup.state_of("crashy") == "broken"
                 and _rows(sqlite_db)["crashy"].state == "broken")
    row = _rows(sqlite_db)["crashy"]
    assert row.restarts == 3
    assert "code 3" in row.detail
    assert (tmp_path / "logs" / "crashy.log").read_text().count("crashing") == 3
    # Broken means it stays down: the supervisor keeps polling (and beating) without starting it again.
    for _ in range(3):
        beat = _rows(sqlite_db)["crashy"].heartbeat_at

        def beaten(before: float | None = beat) -> bool:
            return _rows(sqlite_db)["crashy"].heartbeat_at != before

        await _until("a supervisor heartbeat", beaten)
    assert (tmp_path / "logs" / "crashy.log").read_text().count("crashing") == 3
    sup.stop()
    await asyncio.wait_for(task, 10)


async def test_a_restart_request_in_the_database_restarts_the_child(tmp_path: Path, sqlite_db: Database) -> None:
    sup = Supervisor([_spec(tmp_path, "alpha", SLEEPER)], sqlite_db, tmp_path / "logs", poll_interval=0.05)
    task = asyncio.create_task(sup.run())
    await _until("alpha running", lambda: "alpha" in _rows(sqlite_db) and _rows(sqlite_db)["alpha"].state == "running")
    first_pid = _rows(sqlite_db)["alpha"].pid

    request_restart(sqlite_db, "alpha", host="elsewhere")  # another host's child of the same name
    request_restart(sqlite_db, "alpha", host=sup.host)
    await _until("alpha restarted with a new pid", lambda: _rows(sqlite_db)["alpha"].pid not in (None, first_pid)
                 and _rows(sqlite_db)["alpha"].state == "running")
    row = _rows(sqlite_db)["alpha"]
    assert row.restarts == 1
    assert pending_restarts(sqlite_db) == [("elsewhere", "alpha")]
    assert first_pid is not None
    assert not _alive(first_pid)
    sup.stop()
    await asyncio.wait_for(task, 10)


async def test_a_broken_child_comes_back_when_an_operator_restarts_it(tmp_path: Path, sqlite_db: Database) -> None:
    flag = tmp_path / "healthy"
    source = (
        f"import os, sys, time\nif not os.path.exists({str(flag)!r}): sys.exit(1)\n"
        "while True: time.sleep(0.05)\n"
    )
    policy = RestartPolicy(base_delay=0.01, max_delay=0.01, max_crashes=1, crash_window=60.0)
    sup = Supervisor([_spec(tmp_path, "flaky", source)], sqlite_db, tmp_path / "logs",
                     policy=policy, poll_interval=0.05)
    task = asyncio.create_task(sup.run())
    await _until("flaky broken", lambda: sup.state_of("flaky") == "broken")
    flag.write_text("ok")
    sup.restart("flaky")
    await _until("flaky running again", lambda: sup.state_of("flaky") == "running")
    sup.stop()
    await asyncio.wait_for(task, 10)


async def test_a_child_ignoring_sigterm_is_killed_with_its_group_after_the_grace_period(
    tmp_path: Path, sqlite_db: Database
) -> None:
    sup = Supervisor([_spec(tmp_path, "stubborn", STUBBORN)], sqlite_db, tmp_path / "logs",
                     poll_interval=0.05, grace_seconds=0.3)
    task = asyncio.create_task(sup.run())
    log = tmp_path / "logs" / "stubborn.log"
    await _until("the stubborn child's pid in its log", lambda: log.exists() and log.read_text().strip().isdigit())
    grandchild = int(log.read_text().strip())
    leader = _rows(sqlite_db)["stubborn"].pid
    sup.stop()
    await asyncio.wait_for(task, 10)
    assert leader is not None
    await _until("the stubborn child and its grandchild gone",
                 lambda: not _alive(leader) and not _alive(grandchild))
    assert _rows(sqlite_db)["stubborn"].state == "stopped"


async def test_child_output_is_echoed_with_its_name(tmp_path: Path, sqlite_db: Database) -> None:
    lines: list[tuple[str, str]] = []
    sup = Supervisor([_spec(tmp_path, "alpha", SLEEPER)], sqlite_db, tmp_path / "logs",
                     poll_interval=0.05, echo=lambda name, line: lines.append((name, line)))
    task = asyncio.create_task(sup.run())
    await _until("alpha's greeting echoed", lambda: ("alpha", "hello from alpha") in lines)
    sup.stop()
    await asyncio.wait_for(task, 10)


async def test_agentz_serve_records_its_children_and_stops_them_on_sigterm(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'agentz.db'}"
    key = tmp_path / "app.pem"
    key.write_text(make_private_key())
    # A configuration `agentz doctor` accepts (serve checks it first); GitHub is a closed local port.
    env = {**os.environ, "DATABASE_URL": db_url, "STATE_DIR": str(tmp_path / "state"),
           "GITHUB_WEBHOOK_SECRET": "s", "GITHUB_APP_ID": "1", "GITHUB_PRIVATE_KEY_PATH": str(key),
           "GITHUB_API_URL": "http://127.0.0.1:9", "DEFAULT_BACKEND": "scripted", "RECEIVER_PORT": "0",
           "LOG_FORMAT": "json"}
    metrics_dir = tmp_path / "state" / "prometheus"
    metrics_dir.mkdir(parents=True)
    (metrics_dir / "counter_1.db").write_bytes(b"left by the previous serve")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentz_app", "serve", "--no-tui", "--workers", "2",
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    db = Database.from_url(db_url)
    try:
        names = {"receiver", "scheduler", "planner", "worker-1", "worker-2", "reconciler"}

        def all_recorded() -> bool:
            try:
                return set(_rows(db)) == names
            except SQLAlchemyError:
                return False  # tables not created yet

        await _until("every process recorded", all_recorded)
        # The receiver writes its latency histogram where /metrics sums every child's files.
        await _until("the receiver's latency histogram file", lambda: any(metrics_dir.glob("histogram_*.db")))
        assert not (metrics_dir / "counter_1.db").exists()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        assert {row.state for row in _rows(db).values()} == {"stopped"}
        assert (tmp_path / "state" / "logs" / "receiver.log").exists()
    finally:
        if proc.returncode is None:
            proc.kill()
        db.dispose()


async def test_a_child_in_backoff_records_when_it_restarts_and_its_recent_crashes(
    tmp_path: Path, sqlite_db: Database
) -> None:
    clock = [1000.0]
    policy = RestartPolicy(base_delay=30.0, max_delay=60.0, max_crashes=5, crash_window=300.0)
    sup = Supervisor([_spec(tmp_path, "crashy", CRASHER)], sqlite_db, tmp_path / "logs", policy=policy,
                     poll_interval=0.05, clock=lambda: clock[0])
    task = asyncio.create_task(sup.run())
    await _until("crashy in backoff",
                 lambda: "crashy" in _rows(sqlite_db) and _rows(sqlite_db)["crashy"].state == "backoff")
    row = _rows(sqlite_db)["crashy"]
    assert (row.restart_at, row.recent_crashes) == (1030.0, 1)
    assert row.detail == "exited with code 3; restart in 30s"
    sup.stop()
    await asyncio.wait_for(task, 10)
    assert _rows(sqlite_db)["crashy"].restart_at is None
