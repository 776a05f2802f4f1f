"""The claim path's statements: one round trip each on PostgreSQL, fenced, with their events."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from agentz_app.domain.states import CLAIMABLE_BY_PLANNER, CLAIMABLE_BY_WORKER, LEASED, LIVE, Status
from agentz_app.errors import IllegalTransition, LeaseLost
from agentz_app.store import claim_sql
from agentz_app.store.db import Database
from agentz_app.store.models import CLAIM_ORDER_WHERE
from agentz_app.store.runs import RunQueue, file_resource
from tests.fakes import FakeClock
from tests.waiting import wait_for_sync


@contextmanager
def statements(queue: RunQueue) -> Iterator[list[str]]:
    """The SQL statements the block sends (BEGIN, COMMIT and pragmas are not statements): SQLite's own
    trace of them; on PostgreSQL, those SQLAlchemy executes and those sent straight to the driver."""
    if queue.db.is_sqlite:
        with _sqlite_statements(queue.db) as traced:
            yield traced
        return
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if not statement.startswith("BEGIN"):
            sent.append(statement)

    direct = queue.leases.single_statements
    send = direct._send

    def send_and_record(sql: str, *args: Any, **options: Any) -> list[Any]:
        sent.append(sql)
        return send(sql, *args, **options)

    event.listen(queue.db.engine, "before_cursor_execute", record)
    direct._send = send_and_record  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        event.remove(queue.db.engine, "before_cursor_execute", record)
        del direct._send


@contextmanager
def _sqlite_statements(db: Database) -> Iterator[list[str]]:
    sent: list[str] = []
    traced: list[Any] = []

    def trace(statement: str) -> None:
        if not statement.startswith(("BEGIN", "COMMIT", "ROLLBACK", "PRAGMA")):
            sent.append(statement)

    def on_checkout(dbapi_connection: Any, *_: Any) -> None:
        dbapi_connection.set_trace_callback(trace)
        traced.append(dbapi_connection)

    event.listen(db.engine, "checkout", on_checkout)
    try:
        yield sent
    finally:
        event.remove(db.engine, "checkout", on_checkout)
        for dbapi_connection in traced:
            dbapi_connection.set_trace_callback(None)


def _kinds(queue: RunQueue, run_id: str) -> list[str]:
    return [e.kind for e in queue.reads.events(run_id)]


def test_a_claim_is_one_statement_on_postgres_and_writes_its_event(queue: RunQueue) -> None:
    run, _ = queue.intake.enqueue("o/r", 1)
    with statements(queue) as sent:
        claimed = queue.leases.take("w1", statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING)
    assert len(sent) == (2 if queue.db.is_sqlite else 1)
    [taken] = claimed
    assert (taken.run_id, taken.from_status, taken.status, taken.lease.attempt) == (run.id, "queued", "planning", 1)
    last = queue.reads.events(run.id)[-1]
    assert (last.kind, last.from_status, last.to_status) == ("claimed", "queued", "planning")
    assert last.payload == {"owner": "w1", "attempt": 1, "expires_at": pytest.approx(1_000_060.0)}
    after = queue.reads.get(run.id)
    assert (after.status, after.lease_owner, after.attempt) == ("planning", "w1", 1)
    assert after.lease_expires_at == 1_000_060.0


def test_a_completion_is_one_statement_on_postgres_and_writes_its_event(queue: RunQueue) -> None:
    run, _ = queue.intake.enqueue("o/r", 1)
    [taken] = queue.leases.take("w1", statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING)
    with statements(queue) as sent:
        moved = queue.moves.complete(taken.lease, Status.CANCELLED, event={"reason": "done here"})
    # SQLite: the event while the lease holds, the update, the claims given back (with any deferred runs to wake).
    assert len(sent) == (3 if queue.db.is_sqlite else 1)
    assert (moved.run_id, moved.status) == (run.id, "cancelled")
    last = queue.reads.events(run.id)[-1]
    assert (last.kind, last.from_status, last.to_status) == ("transition", "planning", "cancelled")
    assert last.payload == {"actor": "w1", "attempt": 1, "reason": "done here"}
    after = queue.reads.get(run.id)
    assert (after.status, after.lease_owner, after.finished_at) == ("cancelled", None, 1_000_000.0)
    assert queue.reads.claims_of(run.id) == []  # a terminal status gives every claim back


def test_a_stale_lease_never_completes(queue: RunQueue, clock: FakeClock) -> None:
    run, _ = queue.intake.enqueue("o/r", 1)
    [stale] = queue.leases.take("w1", statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING)
    clock.now += 120
    queue.leases.revoke_lease(run.id, reason="lease expired")
    [current] = queue.leases.take("w2", statuses=(Status.PLANNING,), run_id=run.id)
    before = _kinds(queue, run.id)
    with pytest.raises(LeaseLost):
        queue.moves.complete(stale.lease, Status.FAILED, error="zombie")
    moved, lost = queue.moves.complete_many([stale.lease], Status.FAILED)
    assert (moved, lost) == ([], [stale.lease])
    after = queue.reads.get(run.id)
    assert (after.status, after.lease_owner, after.attempt, after.error) == ("planning", "w2", 3, None)
    assert _kinds(queue, run.id) == before  # the zombie wrote no event
    assert current.lease.attempt == 3


def test_an_illegal_completion_names_the_status_and_changes_nothing(queue: RunQueue) -> None:
    run, _ = queue.intake.enqueue("o/r", 1)
    [taken] = queue.leases.take("w1", statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING)
    before = _kinds(queue, run.id)
    with pytest.raises(IllegalTransition, match="planning"):
        queue.moves.complete(taken.lease, Status.DONE)
    with pytest.raises(IllegalTransition, match="planning"):
        queue.moves.complete_many([taken.lease], Status.DONE)
    assert (queue.reads.get(run.id).status, _kinds(queue, run.id)) == ("planning", before)


def test_a_claim_targets_one_run_and_skips_leased_ones(queue: RunQueue) -> None:
    first, _ = queue.intake.enqueue("o/r", 1)
    second, _ = queue.intake.enqueue("o/r", 2)
    [taken] = queue.leases.take("w1", statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING, run_id=second.id)
    assert taken.run_id == second.id
    assert queue.leases.take("w2", statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING, run_id=second.id) == []
    assert [c.run_id for c in queue.leases.take("w2", statuses=CLAIMABLE_BY_PLANNER, limit=5)] == [first.id]


def test_a_batch_claim_returns_oldest_first_with_one_lease_and_event_each(queue: RunQueue, clock: FakeClock) -> None:
    ids = []
    for number in range(1, 4):
        clock.now += 1
        ids.append(queue.intake.enqueue("o/r", number)[0].id)
    claimed = queue.leases.take("w1", statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING, limit=2)
    assert [c.run_id for c in claimed] == ids[:2]
    assert {c.lease.attempt for c in claimed} == {1}
    moved, lost = queue.moves.complete_many([c.lease for c in claimed], Status.QUEUED, event={"reason": "again"})
    assert ([m.run_id for m in moved], lost) == (ids[:2], [])
    for run_id in ids[:2]:
        last = queue.reads.events(run_id)[-1]
        assert (last.kind, last.from_status, last.to_status) == ("transition", "planning", "queued")
        assert last.payload == {"actor": "w1", "attempt": 1, "reason": "again"}


def test_a_completion_that_frees_claims_wakes_the_deferred_run(queue: RunQueue) -> None:
    holder, _ = queue.intake.enqueue("o/r", 1)
    waiter, _ = queue.intake.enqueue("o/r", 2)
    [held] = queue.leases.take("w1", statuses=(Status.QUEUED,), run_id=holder.id)
    assert queue.resources.claim_resources(held.lease, [file_resource("o/r", "a.py")]) == []
    [waiting] = queue.leases.take("w2", statuses=(Status.QUEUED,), run_id=waiter.id)
    conflicts = queue.resources.claim_resources(waiting.lease, [file_resource("o/r", "a.py")])
    queue.moves.defer(waiting.lease, conflicts)
    assert queue.reads.get(waiter.id).status == "deferred"
    queue.moves.complete(held.lease, Status.CANCELLED)
    assert queue.reads.get(waiter.id).status == "queued"


def test_batch_claimers_never_exceed_the_per_repo_limit(db: Database) -> None:
    queue = RunQueue(db)
    for repo in ("o/a", "o/b", "o/c"):
        for number in range(1, 7):
            queue.intake.enqueue(repo, number)
    start = threading.Barrier(6)
    taken: list[str] = []

    def claim(owner: str) -> None:
        start.wait()
        for claimed in RunQueue(db).leases.take(owner, statuses=CLAIMABLE_BY_PLANNER, limit=4, per_repo_limit=2):
            taken.append(claimed.repo)

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(taken) == ["o/a", "o/a", "o/b", "o/b", "o/c", "o/c"]
    leased = [run.repo for run in queue.reads.list_runs() if run.lease_owner is not None or run.status in LEASED]
    assert sorted(leased) == sorted(taken)


@pytest.mark.parametrize("statuses", [CLAIMABLE_BY_PLANNER, CLAIMABLE_BY_WORKER], ids=["planner", "worker"])
def test_claims_read_the_claim_order_index(db: Database, statuses: frozenset[Status]) -> None:
    """The index holds only live unleased runs; the planner's and the workers' claims can use it."""
    wanted = tuple(sorted(statuses))
    if db.is_sqlite and len(wanted) > 1:
        pytest.skip("SQLite's planner sorts a claim over several statuses itself (the index gives one status's order)")
    if db.is_sqlite:
        compiled = claim_sql.driver_sql(claim_sql.sqlite_claim_events(wanted, None, by_id=False, per_repo=False),
                                        db.engine.dialect)
        values = compiled.parameters({"limit": 1, "owner": "w", "stamp": 1.0, "expires": 2.0})
        with db.engine.connect() as connection:
            plan = " ".join(str(row[-1]) for row in connection.exec_driver_sql(
                f"EXPLAIN QUERY PLAN {compiled.sql}", values))  # type: ignore[arg-type]
    else:
        compiled = claim_sql.driver_sql(claim_sql.pg_claim(wanted, None, by_id=False, per_repo=False),
                                        db.engine.dialect)
        values = compiled.parameters({"limit": 1, "owner": "w", "stamp": 1.0, "expires": 2.0})
        with db.engine.connect() as connection:
            connection.exec_driver_sql("SET enable_seqscan = off")  # the question is whether the index applies
            plan = " ".join(row[0] for row in connection.exec_driver_sql(
                f"EXPLAIN {compiled.sql}", values))  # type: ignore[arg-type]
    assert "ix_runs_claim_order" in plan


def test_the_claim_order_index_is_the_one_the_models_describe(db: Database) -> None:
    """The migration wrote the predicate the claim statements repeat (the live statuses, unleased)."""
    with db.engine.connect() as connection:
        if db.is_sqlite:
            [definition] = connection.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE name = 'ix_runs_claim_order'").scalars()
            assert definition.endswith(f"WHERE {CLAIM_ORDER_WHERE}")
        else:
            [definition] = connection.exec_driver_sql(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_runs_claim_order'").scalars()
            for status in Status:
                assert (f"'{status.value}'" in definition) == (status in LIVE)


@pytest.mark.postgres
def test_a_completion_waiting_on_a_revocation_finds_its_lease_lost(migrated_postgres_url: str) -> None:
    """The fence is checked again on the row the completion waits for: a revocation that commits
    while the completion waits on its row lock wins, and the completion changes nothing."""
    postgres_db = Database.from_url(migrated_postgres_url)
    queue = RunQueue(postgres_db)
    run, _ = queue.intake.enqueue("o/r", 1)
    [taken] = queue.leases.take("w1", statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING)
    outcome: list[BaseException | None] = []

    def complete() -> None:
        try:
            queue.moves.complete(taken.lease, Status.FAILED, error="late")
            outcome.append(None)
        except LeaseLost as exc:
            outcome.append(exc)

    with postgres_db.engine.connect() as revoker:
        revoker.exec_driver_sql("UPDATE runs SET attempt = attempt + 1, lease_owner = NULL WHERE id = %(id)s",
                                {"id": run.id})  # holds the row lock until the commit below
        completer = threading.Thread(target=complete)
        completer.start()
        with postgres_db.engine.connect() as watcher:

            def waiting_on_the_row() -> bool:
                # pg_stat_activity is read once per transaction: each look is a transaction of its own.
                with watcher.begin():
                    return watcher.exec_driver_sql(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'").scalar() == 1

            wait_for_sync(waiting_on_the_row, timeout=30, what="the completion waiting on the row lock")
        revoker.commit()
    completer.join(timeout=30)
    [lost] = outcome
    assert isinstance(lost, LeaseLost)
    after = queue.reads.get(run.id)
    assert (after.status, after.attempt, after.error) == ("planning", 2, None)
    assert _kinds(queue, run.id)[-1] == "claimed"
    postgres_db.dispose()


def test_only_run_statuses_are_written_into_the_statements() -> None:
    """Statuses become SQL text; anything but a run status is refused before it gets there."""
    with pytest.raises(ValueError, match="not a valid Status"):
        claim_sql.pg_claim(("queued') OR ('1' = '1",), None, by_id=False, per_repo=False)
    with pytest.raises(ValueError, match="not a valid Status"):
        claim_sql.pg_complete(("status",), claim_sql.DROP_NONE, "done'; DROP TABLE runs; --")
