"""Retention decisions: what is due when, without a database or a disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentz_app.config import Settings
from agentz_app.errors import ConfigError
from agentz_app.ingress.inbox import is_dead_after, retry_delay
from agentz_app.store.retention import (
    DAY_SECONDS,
    PruneReport,
    RetentionPolicy,
    cutoffs,
    format_bytes,
    prune_is_due,
)
from agentz_app.store.retention_files import (
    Folder,
    Removed,
    RunFacts,
    agent_homes_due,
    home_key,
    mirrors_due,
    run_logs_due,
)
from tests.fakes import FakeClock

DAY = DAY_SECONDS


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


def folder(key: str, mtime: float = 0.0, size: int = 10) -> Folder:
    return Folder(Path("/state") / key, key, mtime, size)


def test_cutoffs_are_the_configured_days_before_now() -> None:
    clock = FakeClock(100 * DAY)
    limits = cutoffs(RetentionPolicy(deliveries_days=14, events_days=90, run_logs_days=30, agent_homes_days=7),
                     clock())
    assert (limits.deliveries, limits.events, limits.run_logs, limits.agent_homes) == (
        86 * DAY, 10 * DAY, 70 * DAY, 93 * DAY)


def test_policy_comes_from_the_retain_settings() -> None:
    settings = Settings.load(None, retain_deliveries_days=3, retain_events_days=4, retain_run_logs_days=5,
                             retain_agent_homes_days=6)
    assert RetentionPolicy.from_settings(settings) == RetentionPolicy(3, 4, 5, 6)


@pytest.mark.parametrize("variable", ["MAX_DELIVERY_ATTEMPTS", "RETAIN_DELIVERIES_DAYS", "RETAIN_EVENTS_DAYS",
                                      "RETAIN_RUN_LOGS_DAYS", "RETAIN_AGENT_HOMES_DAYS"])
@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_bad_retention_settings_name_the_variable(variable: str, value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        Settings.load(None)


def test_retention_defaults() -> None:
    settings = Settings.load(None)
    assert (settings.max_delivery_attempts, settings.retain_deliveries_days, settings.retain_events_days,
            settings.retain_run_logs_days, settings.retain_agent_homes_days) == (8, 14, 90, 30, 14)


def test_a_prune_is_due_a_day_after_the_last_one_started() -> None:
    clock = FakeClock(1000 * DAY)
    assert prune_is_due(None, clock())
    started = clock()
    clock.now += DAY - 1
    assert not prune_is_due(started, clock())
    clock.now += 1
    assert prune_is_due(started, clock())


def test_a_prune_dated_far_in_the_future_does_not_block_pruning_forever() -> None:
    assert not prune_is_due(1000 * DAY + 3600, 1000 * DAY)
    assert prune_is_due(2000 * DAY, 1000 * DAY)


def test_a_delivery_dies_on_its_last_allowed_failure() -> None:
    assert [is_dead_after(attempts, 3) for attempts in (1, 2, 3, 4)] == [False, False, True, True]


def test_eight_attempts_back_off_over_about_ten_minutes() -> None:
    waits = [retry_delay(attempts) for attempts in range(1, 8)]
    assert waits == [5, 10, 20, 40, 80, 160, 320]


def test_run_logs_are_due_once_their_run_finished_before_the_cutoff() -> None:
    runs = {
        "old": RunFacts("done", 10.0),
        "recent": RunFacts("failed", 60.0),
        "live": RunFacts("developing", None),
        "resumed": RunFacts("queued", 10.0),  # finished once, live again
    }
    folders = [folder("old"), folder("recent"), folder("live"), folder("resumed"), folder("stray-old", mtime=10.0),
               folder("stray-new", mtime=60.0)]
    assert [f.key for f in run_logs_due(folders, runs, cutoff=50.0)] == ["old", "stray-old"]


def test_homes_are_due_when_unused_and_not_a_live_runs() -> None:
    homes = [folder("stale", 10.0), folder("fresh", 60.0), folder("live", 10.0)]
    assert [h.key for h in agent_homes_due(homes, 50.0, protected={"live"})] == ["stale"]


def test_mirrors_are_due_only_for_uninstalled_repositories_no_live_run_uses() -> None:
    mirrors = [folder("o/gone"), folder("O/Gone-Too"), folder("o/kept"), folder("o/busy"), folder("o/unknown"),
               folder("o/renamed")]
    due = mirrors_due(mirrors, uninstalled={"o/gone", "o/gone-too", "o/busy", "O/Renamed"},
                      installed={"o/kept", "o/renamed"}, busy={"O/BUSY"})
    assert [m.key for m in due] == ["o/gone", "O/Gone-Too"]


def test_home_keys_match_the_runners_agent_homes(tmp_path: Path) -> None:
    from workers.runners.cli import agent_home

    workdir = tmp_path / "worktrees" / "run1"
    assert agent_home(tmp_path / "state", "claude", workdir).name == home_key(workdir)


def test_report_summary_says_what_went_and_how_big() -> None:
    report = PruneReport(deliveries=Removed(120, 1_234_567), mirrors=Removed(1, 999))
    assert report.summary() == ("removed deliveries=120 (1.2 MB) events=0 (0 B) run logs=0 (0 B) "
                                "agent homes=0 (0 B) mirrors=1 (999 B) command records=0 (0 B)")
    assert report.as_dict()["deliveries"] == {"count": 120, "bytes": 1_234_567}
    assert PruneReport(dry_run=True).summary().startswith("would remove ")


def test_bytes_are_shown_in_decimal_units() -> None:
    assert [format_bytes(n) for n in (0, 999, 1500, 12_300_000, 3_200_000_000)] == [
        "0 B", "999 B", "1.5 kB", "12.3 MB", "3.2 GB"]
