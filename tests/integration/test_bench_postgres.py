"""One PostgreSQL server serves a whole bench invocation: its databases are fresh, migrated and separate."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from agentz_app.store.db import Database
from agentz_app.store.migrate import HEAD_REVISION, current_revision
from agentz_app.store.models import Delivery
from bench.common import SharedPostgres, postgres_available, postgres_server

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not postgres_available(), reason="PostgreSQL server binaries not installed"),
]


def _deliveries(url: str) -> int:
    db = Database.from_url(url)
    try:
        assert current_revision(db) == HEAD_REVISION
        with db.read() as session:
            return int(session.scalar(select(func.count()).select_from(Delivery)) or 0)
    finally:
        db.dispose()


def _add_delivery(url: str) -> None:
    db = Database.from_url(url)
    try:
        with db.begin() as session:
            session.add(Delivery(delivery_id="d-1", event="issues", payload="{}", received_at=0.0, attempts=0))
    finally:
        db.dispose()


def test_scenarios_sharing_the_server_get_separate_migrated_databases() -> None:
    shared = SharedPostgres()
    shared.start()
    try:
        with postgres_server(shared) as create:
            first = create("first")
            _add_delivery(first)
            assert _deliveries(first) == 1
        with postgres_server(shared) as create:  # a later scenario: same server, its own database
            second = create("second")
            again = create("first")  # a name used before starts empty
        assert first.rsplit("/", 1)[0] == second.rsplit("/", 1)[0]
        assert _deliveries(second) == 0
        assert _deliveries(again) == 0
    finally:
        shared.close()
