"""Pure parts of the supervisor: role table, backoff, circuit breaker, log rotation."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentz_app.supervisor import ROLES, CrashHistory, RestartPolicy, build_specs, open_child_log, write_child_line


def test_serve_runs_one_process_per_role_and_the_requested_workers() -> None:
    specs = build_specs(3, python="/py", env_file=".env.prod")
    assert [spec.name for spec in specs] == [
        "receiver", "scheduler", "planner", "worker-1", "worker-2", "worker-3", "reconciler",
    ]
    assert {spec.role for spec in specs} == set(ROLES)
    assert specs[3].argv == ("/py", "-m", "agentz_app", "--env-file", ".env.prod", "worker")


def test_zero_workers_is_rejected() -> None:
    with pytest.raises(ValueError, match="workers"):
        build_specs(0)


def test_backoff_doubles_up_to_the_ceiling() -> None:
    policy = RestartPolicy(base_delay=1.0, max_delay=10.0)
    assert [policy.delay(n) for n in range(1, 7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_breaker_trips_after_more_than_k_crashes_within_the_window() -> None:
    history = CrashHistory(RestartPolicy(max_crashes=3, crash_window=60.0))
    for at in (0.0, 10.0, 20.0):
        history.record(at)
    assert not history.tripped(20.0)
    history.record(30.0)
    assert history.tripped(30.0)


def test_crashes_older_than_the_window_are_forgotten() -> None:
    history = CrashHistory(RestartPolicy(max_crashes=2, crash_window=60.0))
    for at in (0.0, 10.0, 100.0):
        history.record(at)
    assert history.recent(100.0) == 1
    assert not history.tripped(100.0)


def test_log_file_rotates_by_size_and_keeps_n_backups(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "worker-1.log"
    log = open_child_log(path, max_bytes=10, backups=2)
    for index in range(5):
        write_child_line(log, f"line-{index}\n".encode())  # 7 bytes each: one line per file
    log.close()
    assert path.read_text() == "line-4\n"
    assert (tmp_path / "logs" / "worker-1.log.1").read_text() == "line-3\n"
    assert (tmp_path / "logs" / "worker-1.log.2").read_text() == "line-2\n"
    assert not (tmp_path / "logs" / "worker-1.log.3").exists()


def test_log_file_appends_to_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"old\n")
    log = open_child_log(path, max_bytes=100, backups=1)
    write_child_line(log, b"new\n")
    log.close()
    assert path.read_text() == "old\nnew\n"


def test_log_file_keeps_child_output_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    log = open_child_log(path, max_bytes=1000, backups=1)
    for line in (b"100% done %s %(name)s\n", b"crlf\r\n", b"bad \xff utf-8\n", b"no newline at exit"):
        write_child_line(log, line)
    log.close()
    assert path.read_bytes() == b"100% done %s %(name)s\ncrlf\r\nbad \xff utf-8\nno newline at exit\n"


def test_log_file_needs_a_size_and_a_backup(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="positive"):
        open_child_log(tmp_path / "a.log", max_bytes=10, backups=0)
