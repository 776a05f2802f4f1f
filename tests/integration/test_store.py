from __future__ import annotations

from sqlalchemy import select

from agentz_app.store.db import Database
from agentz_app.store.migrate import migrate
from agentz_app.store.models import Delivery


def test_migrate_twice_is_a_no_op(db: Database) -> None:
    migrate(db)
    assert db.ping()


def test_delivery_round_trip(db: Database) -> None:
    with db.begin() as session:
        session.add(Delivery(delivery_id="d-1", event="issues", action="opened", payload="{}"))
    with db.read() as session:
        stored = session.scalars(select(Delivery)).one()
    assert (stored.delivery_id, stored.event, stored.processed_at) == ("d-1", "issues", None)
