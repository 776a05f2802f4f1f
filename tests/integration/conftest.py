"""Fixtures shared by the queue and reconciler tests."""

from __future__ import annotations

import pytest

from agentz_app.store.db import Database
from agentz_app.store.runs import RunQueue
from tests.fakes import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def queue(db: Database, clock: FakeClock) -> RunQueue:
    """A run queue on SQLite and PostgreSQL whose clock only moves when the test says so."""
    return RunQueue(db, lease_seconds=60, clock=clock)
