from __future__ import annotations

from sqlalchemy import func, select

from agentz_app.store.db import Database
from agentz_app.store.models import Event, Run
from bench.claims import measure


def test_eight_processes_never_claim_the_same_run_twice(db: Database, db_url: str) -> None:
    jobs = 120
    figures = measure(db_url, workers=8, jobs=jobs, batch=[1, 8])  # single and batched claimers race
    assert (figures["double_claims"], figures["lost"]) == (0, 0)
    with db.read() as session:
        claims = session.scalar(select(func.count()).select_from(Event).where(Event.kind == "claimed"))
        owners = set(session.scalars(select(Run.lease_owner)).all())
        statuses = set(session.scalars(select(Run.status)).all())
    assert claims == jobs  # exactly one claim per run
    assert (owners, statuses) == ({None}, {"cancelled"})
