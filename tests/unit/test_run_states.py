from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from agentz_app.domain.states import (
    CLAIMABLE_BY_PLANNER,
    CLAIMABLE_BY_WORKER,
    LEASED,
    LIVE,
    RETRYABLE,
    TERMINAL,
    TRANSITIONS,
    Status,
    can_transition,
)
from agentz_app.errors import StoreError
from agentz_app.reconciler import ReconcileReport, links_issue, plan_recovery
from agentz_app.run_views import format_duration, lease_text, render_table
from agentz_app.store.models import PullSnapshot, Run
from agentz_app.store.owners import (
    current_owner,
    owner_is_dead,
    parse_owner,
    parse_stat_start_time,
    process_start_time,
    this_host,
)
from agentz_app.store.runs import resource_kind, resume_status
from bench.common import EventRow, count_double_claims


def _run(**values: Any) -> Run:
    defaults: dict[str, Any] = {"id": "abc", "repo": "o/r", "issue_number": 1, "status": "queued",
                                "infra_attempts": 0, "attempt": 1, "created_at": 0.0}
    return Run(**{**defaults, **values})


# State machine -----------------------------------------------------------


def test_every_status_is_live_or_terminal_never_both() -> None:
    assert set(Status) == LIVE | TERMINAL
    assert not LIVE & TERMINAL


def test_only_merged_is_final_and_retryable_runs_can_be_requeued() -> None:
    assert [s for s in Status if not TRANSITIONS[s]] == [Status.MERGED]
    assert all(can_transition(s, Status.QUEUED) for s in RETRYABLE)


def test_claimable_statuses_hold_no_lease_until_claimed() -> None:
    assert not CLAIMABLE_BY_PLANNER & LEASED
    assert {Status.FIXING_CI} == CLAIMABLE_BY_WORKER & LEASED


def test_every_leased_status_can_be_recovered() -> None:
    for status in LEASED:
        assert can_transition(status, Status.FAILED)
        assert can_transition(status, Status.NEEDS_HUMAN)
        assert can_transition(status, Status.QUEUED if status == Status.PLANNING else Status.READY)


def test_illegal_transitions_are_refused() -> None:
    assert not can_transition("queued", "done")
    assert not can_transition("merged", "queued")


# Owners ------------------------------------------------------------------


def test_owner_round_trips_through_its_string() -> None:
    owner = parse_owner("build-1.example:4242:987654/worker-2")
    assert (owner.host, owner.pid, owner.start, owner.name) == ("build-1.example", 4242, 987654, "worker-2")
    assert str(owner) == "build-1.example:4242:987654/worker-2"


@pytest.mark.parametrize("text", ["", "host", "host:pid:1", "host:1:x", ":1:2"])
def test_malformed_owner_is_rejected(text: str) -> None:
    with pytest.raises(StoreError):
        parse_owner(text)


def test_start_time_is_read_past_a_command_name_with_parentheses() -> None:
    stat = "77 (odd) name (x)) S " + " ".join(str(n) for n in range(4, 30))  # field n holds n
    assert parse_stat_start_time(stat) == 22


def test_current_owner_names_this_process() -> None:
    owner = parse_owner(current_owner("w1"))
    assert (owner.host, owner.pid, owner.name) == (this_host(), os.getpid(), "w1")
    assert owner.start == process_start_time(os.getpid())
    assert not owner_is_dead(current_owner("w1"))


def _fake_proc(tmp_path: Path, pid: int, start: int) -> Path:
    folder = tmp_path / str(pid)
    folder.mkdir(parents=True)
    rest = ["S"] + ["0"] * 18 + [str(start)] + ["0"] * 10
    (folder / "stat").write_text(f"{pid} (agentz worker) {' '.join(rest)}\n")
    return tmp_path


def test_owner_is_dead_when_pid_is_gone_or_reused(tmp_path: Path) -> None:
    proc = _fake_proc(tmp_path, 100, 5000)
    assert not owner_is_dead("h:100:5000", host="h", proc=proc)
    assert owner_is_dead("h:100:4000", host="h", proc=proc)  # pid reused by a newer process
    assert owner_is_dead("h:101:5000", host="h", proc=proc)  # pid gone


def test_owners_on_other_hosts_or_unparseable_are_never_dead(tmp_path: Path) -> None:
    assert not owner_is_dead("elsewhere:101:5000", host="h", proc=tmp_path)
    assert not owner_is_dead("bench:3", host="h", proc=tmp_path)


# Resources and recovery decisions -----------------------------------------


def test_resource_kinds_are_recognised() -> None:
    assert [resource_kind(r) for r in ("issue:o/r#1", "file:o/r:a.py", "module:o/r:core")] == [
        "issue", "file", "module",
    ]
    with pytest.raises(StoreError):
        resource_kind("branch:o/r:main")


def test_resume_status_depends_on_having_a_plan() -> None:
    assert resume_status(_run(plan={"steps": []})) == Status.READY
    assert resume_status(_run(plan=None)) == Status.QUEUED


def test_recovery_requeues_planning_and_resumes_work_at_its_stage() -> None:
    planning = plan_recovery(_run(status="planning"), cause="expired", max_infra_attempts=3, pull=None)
    assert (planning.target, planning.fields) == (Status.QUEUED, {"infra_attempts": 1})
    fixing = plan_recovery(_run(status="fixing", stage=None), cause="expired", max_infra_attempts=3, pull=None)
    assert (fixing.target, fixing.fields["stage"]) == (Status.READY, "fixing")


def test_recovery_gives_up_at_the_infra_attempt_limit() -> None:
    decision = plan_recovery(_run(status="developing", infra_attempts=2), cause="expired", max_infra_attempts=3,
                             pull=None)
    assert decision.target == Status.FAILED
    assert "3 infrastructure attempts" in decision.fields["error"]


def test_recovery_of_a_submission_whose_pr_was_closed_needs_a_human() -> None:
    closed = PullSnapshot(repo="o/r", number=9, state="closed", merged=False)
    decision = plan_recovery(_run(status="submitting", pr_number=9), cause="expired", max_infra_attempts=3,
                             pull=closed)
    assert decision.target == Status.NEEDS_HUMAN
    assert "#9" in decision.fields["error"]
    open_pull = PullSnapshot(repo="o/r", number=9, state="open", merged=False)
    assert plan_recovery(_run(status="submitting", pr_number=9), cause="x", max_infra_attempts=3,
                         pull=open_pull).target == Status.READY


def test_recovery_of_a_claim_that_kept_its_status_only_drops_the_lease() -> None:
    decision = plan_recovery(_run(status="ready"), cause="expired", max_infra_attempts=3, pull=None)
    assert (decision.target, decision.bucket) == (None, "released")


def test_foreign_pull_must_be_open_link_the_issue_and_use_another_branch() -> None:
    run = _run(issue_number=4, branch="agent-z/issue-4-fix")
    pull = PullSnapshot(repo="o/r", number=2, state="open", merged=False, head_ref="alice/fix", linked_issues=[4])
    assert links_issue(pull, run)
    assert not links_issue(PullSnapshot(repo="o/r", state="open", merged=False, head_ref="agent-z/issue-4-fix",
                                        linked_issues=[4]), run)
    assert not links_issue(PullSnapshot(repo="o/r", state="closed", merged=False, head_ref="x",
                                        linked_issues=[4]), run)
    assert not links_issue(PullSnapshot(repo="o/r", state="open", merged=False, head_ref="x",
                                        linked_issues=[5]), run)


def test_report_summary_lists_only_actions_taken() -> None:
    report = ReconcileReport(requeued=["a"], merged=["b", "c"])
    assert (report.total, report.summary()) == (3, "requeued=1 merged=2")
    assert ReconcileReport().summary() == "nothing to do"


# Audit and rendering --------------------------------------------------------


def _claimed(run_id: str, attempt: int, owner: str) -> EventRow:
    return EventRow(run_id, "claimed", "planning", {"attempt": attempt, "owner": owner})


def test_double_claims_are_counted_from_the_event_log() -> None:
    finished = EventRow("r1", "transition", "cancelled", {"actor": "a"})
    clean = [_claimed("r1", 1, "a"), finished, _claimed("r1", 2, "b")]
    assert count_double_claims(clean) == 0
    assert count_double_claims([_claimed("r1", 1, "a"), _claimed("r1", 2, "b")]) == 1  # overlapping leases
    assert count_double_claims([_claimed("r1", 1, "a"), finished, _claimed("r1", 1, "b")]) == 1  # same attempt


def test_holder_moving_between_leased_statuses_keeps_its_lease() -> None:
    moved = EventRow("r1", "transition", "reviewing", {"actor": "a"})
    assert count_double_claims([_claimed("r1", 1, "a"), moved, _claimed("r1", 2, "b")]) == 1


@pytest.mark.parametrize(("seconds", "text"), [(-3, "0s"), (45, "45s"), (180, "3m"), (7500, "2h05m"), (273600, "3d4h")])
def test_durations_are_compact(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_lease_text_shows_remaining_or_expired_time() -> None:
    assert lease_text(_run(lease_owner=None), 100.0) == "-"
    assert lease_text(_run(lease_owner="w1", lease_expires_at=130.0), 100.0) == "w1 (30s)"
    assert lease_text(_run(lease_owner="w1", lease_expires_at=90.0), 100.0) == "w1 (expired 10s ago)"


def test_table_columns_align() -> None:
    table = render_table([{"id": "a", "status": "queued"}, {"id": "bbbb", "status": "ready"}], ("id", "status"))
    assert table.splitlines() == ["ID    STATUS", "a     queued", "bbbb  ready"]
