"""The CI verdict is a pure function of the head's check runs, statuses and suites."""

from __future__ import annotations

import pytest

from agentz_app.domain.ci import CheckSignal, CIPolicy, SuiteSignal, decide_ci, latest_attempts

NOW = 10_000.0
POLICY = CIPolicy(own_slug="agent-z", quiet_seconds=10, grace_seconds=600, repo_has_ci=True, waiting_since=NOW - 60)


def run(key: int, name: str, status: str = "completed", conclusion: str | None = "success", *, suite: int = 1,
        slug: str = "github-actions", at: float = NOW - 30) -> CheckSignal:
    return CheckSignal("check_run", str(key), name, status, conclusion, app_slug=slug, suite_id=suite,
                       changed_at=at)


def status(context: str, state: str, *, at: float = NOW - 30) -> CheckSignal:
    conclusion = {"success": "success", "failure": "failure", "error": "failure"}.get(state)
    return CheckSignal("status", context, context, "completed" if conclusion else "in_progress", conclusion,
                       changed_at=at)


def suite(suite_id: int, state: str = "completed", conclusion: str | None = "success", *, runs: int = 1,
          slug: str = "github-actions", seen: float = NOW - 50) -> SuiteSignal:
    return SuiteSignal(suite_id, slug, state, conclusion, runs=runs, first_seen_at=seen, changed_at=seen)


def test_two_workflows_with_a_test_job_are_two_checks_and_a_later_success_does_not_hide_a_failure() -> None:
    signals = [run(11, "test", conclusion="failure", suite=1, at=NOW - 40), run(12, "test", suite=2, at=NOW - 30)]
    verdict = decide_ci(signals, [suite(1, conclusion="failure"), suite(2)], NOW, policy=POLICY)
    assert verdict.outcome == "failure"
    assert [s.key for s in verdict.failed] == ["11"]


def test_a_re_run_of_a_failed_job_replaces_the_failed_attempt() -> None:
    failed, rerun = run(11, "test", conclusion="failure"), run(15, "test", "in_progress", None)
    assert decide_ci([failed, rerun], [suite(1, "in_progress", None)], NOW, policy=POLICY).outcome == "pending"
    passed = run(15, "test")
    assert latest_attempts([passed, failed]) == [passed]
    assert decide_ci([failed, passed], [suite(1)], NOW, policy=POLICY).outcome == "success"


def test_a_stale_failed_suite_does_not_fail_a_re_run_that_passed() -> None:
    signals = [run(11, "test", conclusion="failure"), run(15, "test")]
    assert decide_ci(signals, [suite(1, conclusion="failure")], NOW, policy=POLICY).outcome == "success"


def test_an_open_suite_with_check_runs_blocks_even_when_every_known_check_passed() -> None:
    signals = [run(11, "build", suite=1)]
    suites = [suite(1), suite(2, "in_progress", None, runs=2)]
    verdict = decide_ci(signals, suites, NOW, policy=POLICY)
    assert verdict.outcome == "pending"
    assert "suite" in verdict.reason


def test_an_empty_suite_blocks_while_young_and_is_ignored_once_old() -> None:
    signals = [run(11, "build")]
    young = decide_ci(signals, [suite(1), suite(2, "queued", None, runs=0, seen=NOW - 3)], NOW, policy=POLICY)
    assert young.outcome == "pending"
    assert young.recheck_at == NOW + 7
    old = decide_ci(signals, [suite(1), suite(2, "queued", None, runs=0, seen=NOW - 3600)], NOW, policy=POLICY)
    assert old.outcome == "success"


def test_nothing_is_decided_within_the_quiet_window_after_the_last_change() -> None:
    signals = [run(11, "build", at=NOW - 2)]
    verdict = decide_ci(signals, [suite(1, seen=NOW - 2)], NOW, policy=POLICY)
    assert verdict.outcome == "pending"
    assert verdict.recheck_at == NOW + 8
    assert decide_ci(signals, [suite(1, seen=NOW - 2)], NOW + 8, policy=POLICY).outcome == "success"


@pytest.mark.parametrize(("states", "outcome"), [
    (["pending"], "pending"), (["success"], "success"), (["failure"], "failure"), (["error"], "failure"),
    (["success", "pending"], "pending"), (["success", "error"], "failure"),
])
def test_commit_statuses_alone_are_ci(states: list[str], outcome: str) -> None:
    signals = [status(f"ci/{i}", state) for i, state in enumerate(states)]
    assert decide_ci(signals, [], NOW, policy=POLICY).outcome == outcome


def test_statuses_and_checks_are_judged_together() -> None:
    signals = [run(11, "build"), status("ci/jenkins", "failure")]
    verdict = decide_ci(signals, [suite(1)], NOW, policy=POLICY)
    assert verdict.outcome == "failure"
    assert [s.name for s in verdict.failed] == ["ci/jenkins"]


def test_our_own_checks_and_suites_never_count() -> None:
    own = [run(1, "Agent-Z / review", conclusion="failure", slug="agent-z", suite=9)]
    suites = [suite(9, "queued", None, slug="agent-z", runs=3)]
    assert decide_ci(own, suites, NOW, policy=POLICY).outcome == "none"
    unnamed = CheckSignal("check_run", "Agent-Z / plan", "Agent-Z / plan", "completed", "failure")
    assert decide_ci([unnamed], [], NOW, policy=POLICY).outcome == "none"


def test_a_workflow_that_cannot_start_fails_its_suite_without_check_runs() -> None:
    verdict = decide_ci([], [suite(3, conclusion="startup_failure", runs=0)], NOW, policy=POLICY)
    assert verdict.outcome == "failure"
    assert [s.id for s in verdict.failed_suites] == [3]


def test_the_grace_period_only_applies_to_a_repository_that_never_had_ci() -> None:
    long_ago = CIPolicy(own_slug="agent-z", grace_seconds=600, repo_has_ci=False, waiting_since=NOW - 601)
    done = decide_ci([], [], NOW, policy=long_ago)
    assert done.outcome == "success"
    assert done.reason == "no CI result within 600 s"
    has_ci = CIPolicy(own_slug="agent-z", grace_seconds=600, repo_has_ci=True, waiting_since=NOW - 10**6)
    assert decide_ci([], [], NOW, policy=has_ci).outcome == "none"
    fresh = CIPolicy(own_slug="agent-z", grace_seconds=600, repo_has_ci=False, waiting_since=NOW - 100)
    assert decide_ci([], [], NOW, policy=fresh).recheck_at == NOW + 500
    forever = CIPolicy(own_slug="agent-z", grace_seconds=0, repo_has_ci=False, waiting_since=0)
    assert decide_ci([], [], NOW, policy=forever).outcome == "none"


def test_a_silent_apps_empty_suite_alone_is_no_ci() -> None:
    suites = [suite(5, "queued", None, runs=0, slug="dependabot", seen=NOW - 3600)]
    assert decide_ci([], suites, NOW, policy=POLICY).outcome == "none"


@pytest.mark.parametrize("conclusion", ["failure", "timed_out", "cancelled", "action_required", "startup_failure"])
def test_failing_conclusions(conclusion: str) -> None:
    assert decide_ci([run(1, "t", conclusion=conclusion)], [], NOW, policy=POLICY).outcome == "failure"


@pytest.mark.parametrize("conclusion", ["success", "neutral", "skipped"])
def test_passing_conclusions(conclusion: str) -> None:
    assert decide_ci([run(1, "t", conclusion=conclusion)], [], NOW, policy=POLICY).outcome == "success"
