"""The dashboard's pure view model."""

from __future__ import annotations

from pathlib import Path

from agentz_app.store.models import Event, Process, Run
from agentz_app.tui.data import (
    DoublePress,
    RunClock,
    TaskDetail,
    confirm_hint,
    event_views,
    exit_reason,
    format_duration,
    lease_text,
    plan_lines,
    process_timer,
    process_view,
    processes_title,
    render_detail,
    render_process_detail,
    run_clock,
    run_log_tail,
    sort_runs,
    tail_lines,
    target_url,
    task_timer,
    task_view,
    web_base_for,
)


def _run(**fields: object) -> Run:
    base: dict[str, object] = {"id": "r1", "repo": "o/r", "issue_number": 3, "title": "t", "status": "queued",
                               "created_at": 100.0}
    base.update(fields)
    return Run(**base)


def test_durations_are_short_and_readable() -> None:
    assert [format_duration(s) for s in (None, -3, 0, 59, 245, 7380, 3 * 86400 + 4 * 3600)] == [
        "-", "0s", "0s", "59s", "4m05s", "2h03m", "3d04h",
    ]


def test_lease_shows_owner_and_time_left_or_expiry() -> None:
    assert lease_text(_run(), 0) == "-"
    assert lease_text(_run(lease_owner="w1", lease_expires_at=145.0), 100.0) == "w1 (45s)"
    assert lease_text(_run(lease_owner="w1", lease_expires_at=90.0), 100.0) == "w1 (expired 10s ago)"


def test_task_row_has_issue_pr_age_and_first_error_line() -> None:
    view = task_view(_run(status="failed", stage="develop", pr_number=12, error="boom\ntrace", finished_at=160.0),
                     1000.0)
    assert view.cells() == ("r1", "#3", "failed", "develop", "-", "-", "-", "1m00s", "#12", "boom")


def test_task_row_names_the_host_holding_the_lease_else_the_session() -> None:
    leased = task_view(_run(lease_owner="host-b:42:7/worker", lease_expires_at=2000.0, session_host="host-a"), 1000.0)
    waiting = task_view(_run(session_host="host-a"), 1000.0)
    assert (leased.host, waiting.host, task_view(_run(), 1000.0).host) == ("host-b", "host-a", "-")


def test_process_row_hides_pid_and_shows_uptime_only_when_running() -> None:
    running = process_view(Process(name="w", role="worker", pid=5, state="running", restarts=1, started_at=40.0,
                                   host="h", detail=""), 100.0)
    broken = process_view(Process(name="w", role="worker", pid=5, state="broken", restarts=6, started_at=40.0,
                                  host="h", detail=""), 100.0)
    assert running.cells() == ("w", "h", "running", "5", "1", "1m00s")
    assert broken.cells() == ("w", "h", "broken", "-", "6", "breaker open")
    assert running.key == "h/w"


def test_live_runs_come_before_finished_ones_newest_first() -> None:
    runs = [_run(id="old-done", status="done", created_at=300.0), _run(id="a", created_at=100.0),
            _run(id="b", status="developing", created_at=200.0)]
    assert [run.id for run in sort_runs(runs)] == ["b", "a", "old-done"]


def test_plan_steps_accept_strings_and_objects() -> None:
    summary, steps = plan_lines({"summary": "Do it", "steps": ["one", {"title": "two", "files": ["a.py"]}]})
    assert summary == "Do it"
    assert steps == ("1. one", "2. two [a.py]")
    assert plan_lines(None) == ("", ())


def test_timeline_shows_offsets_and_time_spent_between_events() -> None:
    events = [Event(kind="transition", from_status="queued", to_status="planning", created_at=110.0, payload={}),
              Event(kind="lease_expired", created_at=200.0, payload={"reason": "worker died"})]
    lines = [view.line() for view in event_views(events, started_at=100.0)]
    assert lines == ["+    10s transition queued → planning", "+  1m40s lease_expired (1m30s) - worker died"]


def test_urls_point_at_the_pull_request_when_there_is_one() -> None:
    assert target_url("https://github.com/", "o/r", 3, None) == "https://github.com/o/r/issues/3"
    assert target_url("https://github.com", "o/r", 3, 9) == "https://github.com/o/r/pull/9"
    assert web_base_for("https://api.github.com") == "https://github.com"
    assert web_base_for("https://ghe.corp/api/v3") == "https://ghe.corp"


def test_second_press_confirms_only_within_the_window_and_on_the_same_target() -> None:
    clock = [0.0]
    gate = DoublePress(5.0, lambda: clock[0])
    assert not gate.press("c", "r1")
    clock[0] = 4.9
    assert gate.press("c", "r1")
    assert not gate.press("c", "r1")
    clock[0] = 11.0
    assert not gate.press("c", "r1")
    assert not gate.press("c", "r2")
    assert not gate.press("r", "r2")
    assert gate.pending
    assert confirm_hint("c", "cancel run", "r1") == "press c again within 5s to cancel run r1"


def test_log_tail_reads_the_end_of_each_run_log(tmp_path: Path) -> None:
    folder = tmp_path / "runs" / "r1"
    folder.mkdir(parents=True)
    (folder / "plan.log").write_text("a\nb\nc\n")
    assert run_log_tail(tmp_path, "r1", 2) == ("── plan.log", "b", "c")
    assert run_log_tail(tmp_path, "missing", 2) == ()
    big = tmp_path / "big.log"
    big.write_text("x" * 100 + "\n" + "tail\n")
    assert tail_lines(big, 5, max_bytes=20) == ["tail"]


def test_collapsed_details_show_recent_items_and_expanded_show_all() -> None:
    detail = TaskDetail(run_id="r1", heading="r1 o/r#3", error="", plan_summary="s",
                        plan_steps=tuple(f"{n}. step" for n in range(1, 6)), events=(),
                        log_lines=tuple(str(n) for n in range(20)))
    collapsed = render_detail(detail, expanded=False)
    assert "… 2 more steps" in collapsed
    assert "  11" not in collapsed
    assert "  19" in collapsed
    expanded = render_detail(detail, expanded=True)
    assert "5. step" in expanded
    assert "  11" in expanded
    assert render_detail(None, expanded=False) == "No task selected."


def test_processes_title_mentions_dead_deliveries_only_when_there_are_some() -> None:
    assert processes_title(0) == "Processes"
    assert processes_title(1) == "Processes · 1 dead delivery (agentz deliveries list --dead)"
    assert "2 dead deliveries" in processes_title(2)


def _event(kind: str, at: float, to_status: str | None = None, **payload: object) -> Event:
    return Event(run_id="r1", kind=kind, to_status=to_status, payload=dict(payload), created_at=at)


def test_a_running_agent_call_is_timed_from_its_start_event() -> None:
    run = _run(status="developing", updated_at=150.0)
    events = [_event("transition", 120.0, "developing"), _event("agent_started", 130.0, role="developer")]
    clock = run_clock(run, events)
    assert clock == RunClock(120.0, "developer", 130.0)
    assert task_timer(run, clock, 255.0) == "developer 2m05s"


def test_a_finished_agent_call_stops_its_timer_and_the_status_timer_shows() -> None:
    run = _run(status="reviewing")
    events = [_event("transition", 120.0, "developing"), _event("agent_started", 130.0, role="developer"),
              _event("agent_call", 190.0, role="developer"), _event("transition", 200.0, "reviewing")]
    assert task_timer(run, run_clock(run, events), 230.0) == "reviewing 30s"


def test_a_ci_wait_is_timed_from_entering_waiting_checks() -> None:
    run = _run(status="waiting_checks", updated_at=900.0)
    events = [_event("transition", 600.0, "waiting_checks")]
    assert task_timer(run, run_clock(run, events), 1000.0) == "CI 6m40s"


def test_without_events_the_status_timer_starts_at_the_runs_last_update() -> None:
    run = _run(status="queued", updated_at=990.0)
    assert task_timer(run, run_clock(run, []), 1000.0) == "queued 10s"
    assert task_timer(_run(status="done"), run_clock(_run(status="done"), []), 1000.0) == "-"


def _process(**fields: object) -> Process:
    base: dict[str, object] = {"name": "w", "role": "worker", "pid": None, "state": "backoff", "restarts": 3,
                               "started_at": 40.0, "heartbeat_at": 95.0, "host": "h",
                               "detail": "exited with signal SIGKILL; restart in 4s", "restart_at": 104.0,
                               "recent_crashes": 3}
    base.update(fields)
    return Process(**base)


def test_process_timers_count_uptime_the_start_and_the_restart_countdown() -> None:
    assert process_timer("running", started_at=40.0, restart_at=None, at=100.0) == "1m00s"
    assert process_timer("starting", started_at=97.0, restart_at=None, at=100.0) == "starting 3s"
    assert process_timer("backoff", started_at=40.0, restart_at=104.0, at=100.0) == "restart in 4s"
    assert process_timer("backoff", started_at=40.0, restart_at=None, at=100.0) == "backoff"
    assert process_timer("stopped", started_at=40.0, restart_at=None, at=100.0) == "-"


def test_process_detail_shows_exit_signal_restarts_countdown_and_closed_breaker() -> None:
    text = render_process_detail(process_view(_process(), 100.0), 100.0)
    assert "last exit: exited with signal SIGKILL" in text
    assert "restarts: 3" in text
    assert "backoff: restart in 4s" in text
    assert "circuit breaker: closed (3 recent crashes)" in text
    assert "heartbeat: 5s ago" in text


def test_process_detail_of_a_broken_process_says_the_breaker_is_open_and_how_to_restart() -> None:
    view = process_view(_process(state="broken", detail="exited with code 1", restart_at=None, recent_crashes=6),
                        100.0)
    text = render_process_detail(view, 100.0)
    assert "circuit breaker: open (6 recent crashes); press r twice to restart it" in text
    assert "backoff:" not in text
    assert exit_reason("exited with code 2; restart in 8s") == "exited with code 2"
