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


def _claim_at_once(db: Database, claimers: int) -> list[str]:
    """``claimers`` threads each claim once, released together; the repositories they got."""
    import threading

    from agentz_app.domain.states import CLAIMABLE_BY_PLANNER
    from agentz_app.store.runs import RunQueue

    start = threading.Barrier(claimers)
    claimed: list[str] = []

    def claim(owner: str) -> None:
        start.wait()
        taken = RunQueue(db).leases.claim(owner, statuses=CLAIMABLE_BY_PLANNER, per_repo_limit=1)
        if taken is not None:
            claimed.append(taken[0].repo)

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(claimers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return claimed


def test_simultaneous_claimers_never_exceed_the_per_repo_limit(db: Database) -> None:
    from agentz_app.store.runs import RunQueue

    queue = RunQueue(db)
    for round_ in range(3):
        repo = f"o/busy{round_}"
        for number in range(1, 9):
            queue.intake.enqueue(repo, number)
        assert _claim_at_once(db, 8) == [repo]
