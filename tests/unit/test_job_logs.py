"""A job log becomes the failing step's tail: bounded, without timestamps or ANSI escapes."""

from __future__ import annotations

from agentz_app.domain.joblogs import failing_step_tail, plain_lines

T = "2026-01-02T03:04:05.1234567Z "
LOG = "\n".join([
    T + "##[group]Run actions/checkout@v4",
    T + "with: repository: acme/widgets",
    T + "##[endgroup]",
    T + "Syncing repository",
    T + "##[group]Run python -m pytest -q",
    T + "\x1b[36;1mpython -m pytest -q\x1b[0m",
    T + "shell: /usr/bin/bash -e {0}",
    T + "##[endgroup]",
    T + "F.",
    T + "E   assert speed() >= 1",
    T + "\x1b[31m1 failed\x1b[0m, 1 passed",
    T + "##[error]Process completed with exit code 1.",
    T + "Post job cleanup.",
    T + "Cleaning up orphan processes",
])


def test_the_failing_steps_lines_are_kept_and_the_others_dropped() -> None:
    tail = failing_step_tail(LOG)
    assert tail.splitlines()[0] == "##[group]Run python -m pytest -q"
    assert "E   assert speed() >= 1" in tail
    assert tail.endswith("##[error]Process completed with exit code 1.")
    assert "Syncing repository" not in tail
    assert "Cleaning up" not in tail


def test_timestamps_and_ansi_escapes_are_stripped() -> None:
    tail = failing_step_tail(LOG)
    assert "\x1b" not in tail
    assert "2026-01-02T" not in tail
    assert "1 failed, 1 passed" in tail
    assert plain_lines("\x1b]8;;http://x\x07link\x1b]8;;\x07 \x07bell\r\n") == ["link bell"]


def test_a_long_step_is_cut_to_its_end_and_marked() -> None:
    lines = [T + "##[group]Run make"] + [T + f"line {i}" for i in range(10_000)] + [T + "##[error]boom"]
    tail = failing_step_tail("\n".join(lines), max_lines=50, max_chars=2_000)
    assert tail.startswith("[… earlier lines omitted]")
    assert tail.endswith("##[error]boom")
    assert len(tail) <= 2_000 + 40
    assert "line 9999" in tail
    assert "line 0\n" not in tail


def test_a_log_without_an_error_marker_keeps_its_end() -> None:
    tail = failing_step_tail("\n".join(f"out {i}" for i in range(500)), max_lines=10)
    assert tail.splitlines()[-1] == "out 499"
    assert len(tail.splitlines()) == 11


def test_a_single_huge_line_is_bounded() -> None:
    tail = failing_step_tail("x" * 1_000_000, max_chars=1_000)
    assert len(tail) <= 1_100
