"""``agentz deliveries list|retry`` and ``agentz prune`` through click's runner on a real SQLite file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select

from agentz_app.cli import cli
from agentz_app.store.db import Database
from agentz_app.store.migrate import migrate
from agentz_app.store.models import Delivery, now

DAY = 86400.0


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name in ("GITHUB_REPO", "DATABASE_URL", "STATE_DIR"):
        monkeypatch.delenv(name, raising=False)
    return {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "STATE_DIR": str(tmp_path / ".agent-z"),
        "LOG_FORMAT": "json",
    }


@pytest.fixture
def db(env: dict[str, str]) -> Iterator[Database]:
    database = Database.from_url(env["DATABASE_URL"])
    migrate(database)
    yield database
    database.dispose()


def invoke(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(cli, ["--env-file", "/nonexistent", *args], env=env)


def _seed(db: Database) -> dict[str, int]:
    stamp = now()
    with db.begin() as session:
        rows = [
            Delivery(delivery_id="aaaa-dead", event="issue_comment", action="created", repo="octo/demo",
                     payload="{}", received_at=stamp - 600, attempts=8, dead_at=stamp - 60,
                     error="RuntimeError: \x1b[2J\x1b]0;pwned\x07 handler broke\n" + "x" * 200),
            Delivery(delivery_id="bbbb-done", event="issues", action="opened", repo="octo/demo", payload="{}",
                     received_at=stamp - 500, processed_at=stamp - 499),
            Delivery(delivery_id="cccc-pending", event="push", payload="{}", received_at=stamp - 10, attempts=2,
                     error="boom", next_attempt_at=stamp + 30),
        ]
        session.add_all(rows)
        session.flush()
        return {row.delivery_id: row.id for row in rows}


def test_list_shows_every_delivery_or_only_dead_ones(env: dict[str, str], db: Database) -> None:
    ids = _seed(db)
    table = invoke(env, "deliveries", "list")
    assert table.exit_code == 0, table.output
    header, *rows = table.output.splitlines()
    assert header.split() == ["ID", "DELIVERY", "EVENT", "REPO", "STATE", "ATTEMPTS", "RECEIVED", "DEAD", "ERROR"]
    assert [row.split()[1] for row in rows] == ["cccc-pending", "bbbb-done", "aaaa-dead"]

    dead = invoke(env, "deliveries", "list", "--dead")
    [row] = dead.output.splitlines()[1:]
    assert row.split()[:6] == [str(ids["aaaa-dead"]), "aaaa-dead", "issue_comment/created", "octo/demo", "dead", "8"]
    assert "RuntimeError: ?[2J?]0;pwned? handler broke xxx" in row
    assert row.endswith("…")
    assert "\x1b" not in dead.output
    assert "\x07" not in dead.output


def test_list_as_json_has_the_full_record(env: dict[str, str], db: Database) -> None:
    ids = _seed(db)
    records = json.loads(invoke(env, "deliveries", "list", "--dead", "--json").stdout)
    [record] = records
    assert (record["id"], record["delivery_id"], record["event"], record["action"], record["state"]) == (
        ids["aaaa-dead"], "aaaa-dead", "issue_comment", "created", "dead")
    assert record["error"].endswith("x" * 200)
    assert record["dead_at"] is not None
    assert {r["state"] for r in json.loads(invoke(env, "deliveries", "list", "--json").stdout)} == {
        "dead", "processed", "pending"}


def test_list_says_so_when_nothing_is_dead(env: dict[str, str], db: Database) -> None:
    result = invoke(env, "deliveries", "list", "--dead")
    assert (result.exit_code, result.output.strip()) == (0, "no dead deliveries")


def test_retry_makes_a_dead_delivery_pending_again(env: dict[str, str], db: Database) -> None:
    ids = _seed(db)
    result = invoke(env, "deliveries", "retry", str(ids["aaaa-dead"]))
    assert result.exit_code == 0, result.output
    assert f"delivery {ids['aaaa-dead']} is pending again" in result.output
    with db.read() as session:
        row = session.scalars(select(Delivery).where(Delivery.delivery_id == "aaaa-dead")).one()
    assert (row.dead_at, row.attempts, row.processed_at) == (None, 0, None)
    assert row.next_attempt_at is not None
    assert row.next_attempt_at <= now()
    assert invoke(env, "deliveries", "list", "--dead").output.strip() == "no dead deliveries"


def test_retry_of_an_unknown_or_live_delivery_is_a_clear_error(env: dict[str, str], db: Database) -> None:
    ids = _seed(db)
    unknown = invoke(env, "deliveries", "retry", "no-such-delivery")
    assert unknown.exit_code == 1
    assert "delivery no-such-delivery not found" in unknown.output
    pending = invoke(env, "deliveries", "retry", "cccc-pending")
    assert pending.exit_code == 1
    assert "is pending, not dead" in pending.output
    done = invoke(env, "deliveries", "retry", str(ids["bbbb-done"]))
    assert done.exit_code == 1
    assert "is processed, not dead" in done.output


def test_prune_dry_run_reports_and_deletes_nothing_then_prune_deletes(env: dict[str, str], db: Database) -> None:
    stamp = now()
    with db.begin() as session:
        session.add_all([
            Delivery(delivery_id="old", event="issues", payload="x" * 1000, processed_at=stamp - 15 * DAY),
            Delivery(delivery_id="stuck", event="issues", payload="{}", received_at=stamp - 15 * DAY),
        ])
    logs = Path(env["STATE_DIR"]) / "logs" / "runs" / "stray"
    logs.mkdir(parents=True)

    dry = invoke(env, "prune", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["deliveries"] == {"count": 1, "bytes": 1000}
    with db.read() as session:
        assert len(session.scalars(select(Delivery)).all()) == 2

    text = invoke(env, "prune")
    assert text.exit_code == 0, text.output
    assert text.output.startswith("removed deliveries=1 (1.0 kB) events=0 (0 B) run logs=0")
    with db.read() as session:
        assert session.scalars(select(Delivery.delivery_id)).all() == ["stuck"]
    assert logs.exists()  # a fresh folder of an unknown run is kept
    assert json.loads(invoke(env, "prune", "--json").stdout)["deliveries"] == {"count": 0, "bytes": 0}
