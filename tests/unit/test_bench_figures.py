"""The benchmark runner's correctness gate and the pure helpers behind the ingest and scheduler figures."""

from __future__ import annotations

import pytest

import bench.__main__ as runner
from bench.common import BenchOptions, Figures, failed_checks, format_line, percentile
from bench.ingest import audit, delivery_plan
from bench.scheduler_burst import ranking_steps


def lossy(_: BenchOptions) -> list[Figures]:
    return [{"db": "sqlite", "lost": 0, "duplicated": 0}, {"db": "postgres", "lost": 2, "duplicated": 0}]


def clean(_: BenchOptions) -> Figures:
    return {"double_claims": 0, "lost_runs": 0, "rate": 12.5}


@pytest.fixture
def scenarios(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "SCENARIOS", {"lossy": f"{__name__}:lossy", "clean": f"{__name__}:clean"})


@pytest.mark.usefixtures("scenarios")
def test_check_fails_when_a_correctness_figure_is_not_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert runner.main(["--check"]) == 1
    captured = capsys.readouterr()
    assert "lossy: db=postgres lost=2 duplicated=0" in captured.out
    assert captured.err.strip() == "check failed: lossy: lost=2"


@pytest.mark.usefixtures("scenarios")
def test_check_passes_when_every_correctness_figure_is_zero() -> None:
    assert runner.main(["clean", "--check"]) == 0


@pytest.mark.usefixtures("scenarios")
def test_without_check_non_zero_figures_do_not_fail_the_run() -> None:
    assert runner.main(["lossy"]) == 0


def test_failed_checks_covers_every_scenarios_correctness_keys() -> None:
    results = [("chaos", {"duplicate_prs": 1, "duplicate_comments": 0, "lost_runs": 3, "trials": 100})]
    assert failed_checks(results) == ["chaos: duplicate_prs=1", "chaos: lost_runs=3"]


def test_small_floats_keep_two_decimals() -> None:
    assert format_line("x", {"p50_s": 0.347, "rate": 812.44, "big": 2901.2}) == "x: p50_s=0.35 rate=812.4 big=2901"


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.99), percentile([], 0.5)) == (50.0, 99.0, 0.0)


def test_delivery_plan_repeats_five_percent_of_unique_ids() -> None:
    plan = delivery_plan(200, repeat_fraction=0.05, seed=3)
    ids = [delivery_id for delivery_id, _ in plan]
    assert len(plan) == 210
    assert len(set(ids)) == 200
    assert plan == delivery_plan(200, repeat_fraction=0.05, seed=3)


def test_audit_counts_acknowledged_but_unstored_as_lost() -> None:
    requests = [("a", 202, 1.0), ("b", 202, 1.0), ("b", 200, 1.0), ("c", 500, 1.0)]
    assert audit(requests, stored=["a"]) == (1, 0)


def test_audit_counts_a_delivery_accepted_or_stored_twice_as_duplicated() -> None:
    requests = [("a", 202, 1.0), ("a", 202, 1.0), ("b", 202, 1.0)]
    assert audit(requests, stored=["a", "b", "b"]) == (0, 2)


def test_scripted_ranking_names_only_the_first_candidate_in_the_prompt() -> None:
    import re

    prompt = "Candidates:\n\n### #3: Three\nLabels: none\n\n### #5: Five\n"
    steps = ranking_steps([1, 3, 5])
    chosen = next(step for step in steps if "regex" not in step or re.search(step["regex"], prompt))
    assert chosen["json"]["ranking"][0]["number"] == 3
    assert next(step for step in steps if "regex" not in step)["json"] == {"ranking": []}


def test_scenario_options_may_be_written_with_a_space() -> None:
    from bench.__main__ import join_option_values

    assert join_option_values(["claims", "--db", "postgres", "--workers", "8", "--quick"]) == [
        "claims", "--db=postgres", "--workers=8", "--quick"]
    assert join_option_values(["--jobs=20", "--check", "ingest"]) == ["--jobs=20", "--check", "ingest"]


def test_overhead_leaves_out_runs_that_went_through_a_ci_fix_round() -> None:
    from bench.loop import RunTimes, overhead_figures

    times = [RunTimes(wall=5.0, agent=2.0, ci=1.5, submit=0.5, fix_rounds=0),
             RunTimes(wall=20.0, agent=4.0, ci=3.0, submit=1.0, fix_rounds=1)]
    figures = overhead_figures(times)
    assert figures["runs"] == 1
    assert figures["overhead_s_per_run"] == pytest.approx(1.5)
    with pytest.raises(RuntimeError, match="exactly once"):
        overhead_figures(times[1:])
