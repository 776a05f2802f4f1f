"""0012_typed_state: the kv rows move into their own tables and back on a downgrade."""

from __future__ import annotations

import json
from typing import Any

from alembic import command
from sqlalchemy import text

from agentz_app.store.db import Database
from agentz_app.store.migrate import alembic_config, migrate
from agentz_app.store.prune_markers import marker_keys
from agentz_app.store.rendered import rendered_digest
from agentz_app.store.restart_requests import pending_restarts
from agentz_app.store.scheduler_state import dirty_repos, last_pass_at, resync_state

REPO = "octo/widgets"
OLD_ROWS: dict[str, dict[str, Any]] = {
    f"scheduler:dirty:{REPO}": {"since": 10.0, "last": 12.5, "reason": "issues.labeled #3"},
    f"scheduler:pass:{REPO}": {"at": 20.0, "calls": 1, "prompt_chars": 900, "candidates": 4, "assessed": 2,
                               "admitted": 1},
    f"resync:{REPO}": {"ok_at": 30.0, "failed_at": 31.0, "error": "GitHubError: 502"},
    "retention:database": {"started_at": 40.0, "finished_at": 41.0, "removed": {"deliveries": 7}},
    "retention:files:abc123": {"started_at": 42.0},
    "supervisor:restart:host-a/worker-1": {"requested_at": 50.0, "actor": "operator"},
    "agentz:render:r1:status_comment": {"sha256": "d" * 64},
    "agentz:render:r1:check:ci:annotations": {"sha256": "src/a.py:1 src/b.py:2"},
    "metrics:github": {"requests": {"GET 200": 3}, "rate_limit": {}},
}


def _at_0011_with_old_rows(database: Database) -> None:
    config = alembic_config(str(database.engine.url))
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0011_cross_host")
        for key, value in OLD_ROWS.items():
            connection.execute(text("INSERT INTO kv (key, value, updated_at) VALUES (:key, :value, 5.0)"),
                               {"key": key, "value": json.dumps(value)})


def _downgrade_to_0011(database: Database) -> dict[str, Any]:
    config = alembic_config(str(database.engine.url))
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0011_cross_host")
        rows = connection.execute(text("SELECT key, value FROM kv")).all()
    return {key: value if isinstance(value, dict) else json.loads(value) for key, value in rows}


def test_upgrade_moves_every_kind_of_kv_row_into_its_table(db_url: str) -> None:
    database = Database.from_url(db_url)
    try:
        _at_0011_with_old_rows(database)
        migrate(database)
        with database.read() as session:
            assert dirty_repos(session) == {REPO: {"since": 10.0, "last": 12.5, "reason": "issues.labeled #3"}}
            assert last_pass_at(session, REPO) == 20.0
            cursor = resync_state(session, REPO)
            assert cursor is not None
            assert (cursor.ok_at, cursor.failed_at, cursor.error) == (30.0, 31.0, "GitHubError: 502")
            assert session.execute(text("SELECT count(*) FROM scheduler_passes WHERE admitted = 1")).scalar() == 1
        assert marker_keys(database) == ["retention:database", "retention:files:abc123"]
        assert pending_restarts(database) == [("host-a", "worker-1")]
        assert rendered_digest(database, "r1", "status_comment") == "d" * 64
        assert rendered_digest(database, "r1", "check:ci:annotations") == "src/a.py:1 src/b.py:2"
        with database.engine.connect() as connection:
            assert not database.engine.dialect.has_table(connection, "kv")
    finally:
        database.dispose()


def test_downgrade_writes_the_rows_back_into_kv(db_url: str) -> None:
    database = Database.from_url(db_url)
    try:
        _at_0011_with_old_rows(database)
        migrate(database)
        restored = _downgrade_to_0011(database)
    finally:
        database.dispose()
    expected = {key: value for key, value in OLD_ROWS.items() if key != "metrics:github"}
    assert restored == expected
