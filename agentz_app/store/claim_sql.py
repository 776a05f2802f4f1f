"""The claim and completion statements of the hot path, as SQLAlchemy Core built once per shape.

Each builder is memoised on its arguments (dialect name and statement shape), so a
worker builds a statement once and SQLAlchemy's compiled cache finds it on every later
call. Values travel as bound parameters, except run statuses, which are written into the
statements as constants (only :class:`Status` values, never caller text): the driver has fewer
values to send and the planner sees which statuses a statement reads. No ORM object is built.

On PostgreSQL a claim is one statement: the candidate rows are locked with
``FOR UPDATE SKIP LOCKED`` in a CTE, updated, and their ``claimed`` events inserted by a
data-modifying CTE. A completion likewise updates the fenced row (id, attempt, owner and a
status that may move to the goal, checked in the update's own condition), drops the claims the
goal gives back and inserts its ``transition`` event in one statement. SQLite has no data-modifying CTEs, but
``BEGIN IMMEDIATE`` already serialises writers: there the event is inserted from the rows
it describes (``INSERT … SELECT … RETURNING``) and the runs updated by the next statement.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import (
    ARRAY,
    Float,
    Integer,
    String,
    Table,
    bindparam,
    cast,
    delete,
    exists,
    func,
    insert,
    literal_column,
    null,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import JSON, JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement, Select
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import Delete, Insert, ReturningDelete, Update
from sqlalchemy.types import JSON as AnyJSON

from agentz_app.domain.states import LEASED, Status, can_transition
from agentz_app.store.models import CLAIM_ORDER_STATUSES, Claim, Event, Run

RUNS = typing.cast(Table, Run.__table__)
EVENTS = typing.cast(Table, Event.__table__)
CLAIMS = typing.cast(Table, Claim.__table__)

# How a completion gives back claims: every claim, all but the issue claim, only the issue claim, none.
DROP_ALL, DROP_NON_ISSUE, DROP_ISSUE, DROP_NONE = "all", "non_issue", "issue", "none"
_EVENT_COLUMNS = ("run_id", "kind", "from_status", "to_status", "payload", "created_at")


def _status_literal(value: str) -> Any:
    """A run status written into a statement; anything but a :class:`Status` value is refused."""
    return literal_column(f"'{Status(value).value}'")


def _status_in(column: Any, statuses: tuple[str, ...]) -> Any:
    """``column`` is one of ``statuses`` (with one status an ``=``, so an index returns rows in order)."""
    if len(statuses) == 1:
        return column == _status_literal(statuses[0])
    return column.in_([_status_literal(status) for status in statuses])


def _movable_to(goal: str) -> tuple[str, ...]:
    """The statuses that may move to ``goal`` (a completion's fencing condition)."""
    return tuple(status.value for status in Status if can_transition(status, Status(goal)))


def _json_values(name: str) -> Select[Any]:
    """SQLite: the values of the list ``:name``, passed as one JSON array (so the statement compiles once)."""
    return select(literal_column("value")).select_from(func.json_each(bindparam(name, type_=AnyJSON)))


def _candidates(statuses: tuple[str, ...], *, by_id: bool, per_repo: bool, pg: bool) -> Select[Any]:
    """Unleased runs in ``statuses``, oldest first, locked with SKIP LOCKED; at most ``:limit``.

    PostgreSQL proves from the statuses that the claim-order index applies; SQLite uses a partial
    index only when the statement repeats its terms, so there the status term is repeated."""
    statement = (
        select(RUNS.c.id, RUNS.c.repo, RUNS.c.status, RUNS.c.attempt, RUNS.c.created_at)
        .where(_status_in(RUNS.c.status, statuses), RUNS.c.lease_owner.is_(None))
        .order_by(RUNS.c.created_at, RUNS.c.id)
        .limit(bindparam("limit", type_=Integer))
        .with_for_update(skip_locked=True)
    )
    if not pg and set(statuses) <= set(CLAIM_ORDER_STATUSES):
        statement = statement.where(RUNS.c.status.in_([_status_literal(s) for s in CLAIM_ORDER_STATUSES]))
    if by_id:
        statement = statement.where(RUNS.c.id == bindparam("lease_run_id", type_=String))
    if per_repo:
        statement = statement.where(RUNS.c.repo.not_in(_busy_repos()))
    return statement


def _leased() -> Any:
    """Leased runs; the statuses are written into the statement (constants, so it compiles once)."""
    return or_(_status_in(RUNS.c.status, tuple(sorted(LEASED))), RUNS.c.lease_owner.is_not(None))


def _busy_repos() -> Select[Any]:
    return (select(RUNS.c.repo).where(_leased()).group_by(RUNS.c.repo)
            .having(func.count() >= bindparam("per_repo_limit", type_=Integer)))


def _chosen(statuses: tuple[str, ...], *, by_id: bool, per_repo: bool, pg: bool) -> Any:
    """The runs a claim takes: the candidates, and with a per-repository limit only as many of
    each repository as its leased runs leave room for (counting the ones this claim takes)."""
    picked = _candidates(statuses, by_id=by_id, per_repo=per_repo, pg=pg).cte("picked")
    if not per_repo:
        return picked
    ranked = select(
        picked.c.id, picked.c.status, picked.c.attempt, picked.c.repo,
        func.row_number().over(partition_by=picked.c.repo, order_by=(picked.c.created_at, picked.c.id))
        .label("rank"),
    ).cte("ranked")
    counts = select(RUNS.c.repo, func.count().label("held")).where(_leased()).group_by(RUNS.c.repo).cte("counts")
    return (
        select(ranked.c.id, ranked.c.status, ranked.c.attempt)
        .select_from(ranked.outerjoin(counts, counts.c.repo == ranked.c.repo))
        .where(func.coalesce(counts.c.held, 0) + ranked.c.rank <= bindparam("per_repo_limit", type_=Integer))
        .cte("chosen")
    )


def _lease_values(target: str | None) -> dict[str, Any]:
    return {
        "status": RUNS.c.status if target is None else _status_literal(target),
        "attempt": RUNS.c.attempt + literal_column("1"),
        "lease_owner": bindparam("owner", type_=String),
        "lease_expires_at": bindparam("expires", type_=Float),
        "heartbeat_at": bindparam("stamp", type_=Float),
        "updated_at": bindparam("stamp", type_=Float),
    }


@cache
def pg_claim(statuses: tuple[str, ...], target: str | None, *, by_id: bool, per_repo: bool) -> Select[Any]:
    """PostgreSQL: lock, lease (moving them to ``target``) and log up to ``:limit`` runs in ``statuses``
    in one statement; returns the claimed rows."""
    chosen = _chosen(statuses, by_id=by_id, per_repo=per_repo, pg=True)
    claimed = (
        update(RUNS)
        .where(RUNS.c.id == chosen.c.id)  # locked unleased by the CTE: nobody can lease them meanwhile
        .values(_lease_values(target))
        .returning(RUNS.c.id, RUNS.c.repo, RUNS.c.issue_number, chosen.c.status.label("from_status"),
                   RUNS.c.status, RUNS.c.attempt, RUNS.c.created_at)
        .cte("claimed")
    )
    payload = func.json_build_object(
        literal_column("'owner'"), cast(bindparam("owner", type_=String), String),
        literal_column("'attempt'"), claimed.c.attempt,
        literal_column("'expires_at'"), cast(bindparam("expires", type_=Float), Float),
    )
    logged = insert(EVENTS).from_select(
        _EVENT_COLUMNS,
        select(claimed.c.id, literal_column("'claimed'"), claimed.c.from_status, claimed.c.status, payload,
               cast(bindparam("stamp", type_=Float), Float)),
    ).cte("logged")
    return (
        select(claimed.c.id, claimed.c.repo, claimed.c.issue_number, claimed.c.from_status, claimed.c.status,
               claimed.c.attempt)
        .add_cte(logged)
        .order_by(claimed.c.created_at, claimed.c.id)
    )


@cache
def sqlite_claim_events(statuses: tuple[str, ...], target: str | None, *, by_id: bool, per_repo: bool) -> Insert:
    """SQLite: insert the ``claimed`` events of the runs a claim takes; returns (run id, from, to)."""
    chosen = _chosen(statuses, by_id=by_id, per_repo=per_repo, pg=False)
    source = select(RUNS.c.id, RUNS.c.status, RUNS.c.attempt).where(RUNS.c.id.in_(select(chosen.c.id)))
    rows = source.subquery("taken")
    payload = func.json_object(
        literal_column("'owner'"), bindparam("owner", type_=String),
        literal_column("'attempt'"), rows.c.attempt + literal_column("1"),
        literal_column("'expires_at'"), bindparam("expires", type_=Float),
    )
    to_status = rows.c.status if target is None else _status_literal(target)
    return insert(EVENTS).from_select(
        _EVENT_COLUMNS,
        select(rows.c.id, literal_column("'claimed'"), rows.c.status, to_status, payload,
               bindparam("stamp", type_=Float)),
    ).returning(EVENTS.c.run_id, EVENTS.c.from_status, EVENTS.c.to_status)


@cache
def sqlite_claim_runs(target: str | None) -> Update:
    """SQLite: lease the runs whose claim events were just written (``:ids``); returns the leased rows."""
    return (
        update(RUNS)
        .where(RUNS.c.id.in_(_json_values("ids")), RUNS.c.lease_owner.is_(None))
        .values(_lease_values(target))
        .returning(RUNS.c.id, RUNS.c.repo, RUNS.c.issue_number, RUNS.c.attempt, RUNS.c.created_at)
    )


def _fenced_row(goal: str) -> Any:
    """The row a lease holds, in a status that may move to ``goal``."""
    return (
        (RUNS.c.id == bindparam("lease_run_id", type_=String))
        & (RUNS.c.attempt == bindparam("lease_attempt", type_=Integer))
        & (RUNS.c.lease_owner == bindparam("owner", type_=String))
        & _status_in(RUNS.c.status, _movable_to(goal))
    )


# Columns a completion writes as constants: the goal, and a dropped lease (a completion only ever clears it).
_IN_STATEMENT = frozenset({"status", "lease_owner", "lease_expires_at"})


def _completion_values(columns: tuple[str, ...], goal: str) -> dict[str, Any]:
    """The new values of a completion: constants for the columns of ``_IN_STATEMENT``, the parameter
    ``:v_<name>`` for every other column."""
    constants = {"status": _status_literal(goal), "lease_owner": null(), "lease_expires_at": null()}
    return {name: constants[name] if name in _IN_STATEMENT else bindparam(f"v_{name}", type_=RUNS.c[name].type)
            for name in columns}


def completion_params(values: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters of a completion's new ``values`` (the statement holds the constants)."""
    return {f"v_{name}": value for name, value in values.items() if name not in _IN_STATEMENT}


def _has_deferred(repo: Any) -> Any:
    """Whether ``repo`` has deferred runs (that freed claims could wake)."""
    return exists().where(RUNS.c.repo == repo, RUNS.c.status == _status_literal(Status.DEFERRED))


def _dropping(run_ids: Any, drop: str) -> Delete:
    statement = delete(CLAIMS).where(CLAIMS.c.run_id.in_(run_ids))
    if drop == DROP_ISSUE:
        return statement.where(CLAIMS.c.kind == literal_column("'issue'"))
    if drop == DROP_NON_ISSUE:
        return statement.where(CLAIMS.c.kind != literal_column("'issue'"))
    return statement


@cache
def pg_complete(columns: tuple[str, ...], drop: str, goal: str) -> Select[Any]:
    """PostgreSQL: a fenced move to ``goal``, its claim release and its event in one statement.

    Returns one row (id, repo, issue number, from status, status, claims dropped, whether the
    repository has deferred runs) or none when the lease is lost or the move is illegal.

    The fence is part of the update's own condition, which PostgreSQL checks again on the newest
    version of the row it locks, so no separate row lock is taken. The status it moves from is read
    as the statement began: only the lease holder changes a status without taking the lease away
    (every other change bumps ``attempt``), so while the fence holds that status is current."""
    old = select(RUNS.c.id, RUNS.c.status).where(_fenced_row(goal)).cte("old")
    moved = (
        update(RUNS)
        .where(RUNS.c.id == old.c.id, _fenced_row(goal))
        .values(_completion_values(columns, goal))
        .returning(RUNS.c.id, RUNS.c.repo, RUNS.c.issue_number, old.c.status.label("from_status"), RUNS.c.status)
        .cte("moved")
    )
    logged = insert(EVENTS).from_select(
        _EVENT_COLUMNS,
        select(moved.c.id, literal_column("'transition'"), moved.c.from_status, moved.c.status,
               bindparam("event_payload", type_=EVENTS.c.payload.type), cast(bindparam("stamp", type_=Float), Float)),
    ).cte("logged")
    deferred = _has_deferred(moved.c.repo)
    freed: Any = literal_column("0")
    statement = select(moved.c.id, moved.c.repo, moved.c.issue_number, moved.c.from_status, moved.c.status)
    if drop != DROP_NONE:
        dropped = _dropping(select(moved.c.id), drop).returning(CLAIMS.c.kind).cte("dropped")
        freed = select(func.count()).select_from(dropped).scalar_subquery()
    return statement.add_columns(freed.label("freed"), deferred.label("deferred")).add_cte(logged)


@cache
def sqlite_complete_event(goal: str) -> Insert:
    """SQLite: the ``transition`` event of a fenced move to ``goal``, inserted only while the lease holds."""
    return insert(EVENTS).from_select(
        _EVENT_COLUMNS,
        select(RUNS.c.id, literal_column("'transition'"), RUNS.c.status, _status_literal(goal),
               bindparam("event_payload", type_=EVENTS.c.payload.type), bindparam("stamp", type_=Float))
        .where(_fenced_row(goal)),
    ).returning(EVENTS.c.id)


@cache
def sqlite_complete_run(columns: tuple[str, ...], goal: str) -> Update:
    """SQLite: the fenced update itself; returns (id, repo, issue number, status)."""
    return (
        update(RUNS)
        .where(RUNS.c.id == bindparam("lease_run_id", type_=String),
               RUNS.c.attempt == bindparam("lease_attempt", type_=Integer),
               RUNS.c.lease_owner == bindparam("owner", type_=String))
        .values(_completion_values(columns, goal))
        .returning(RUNS.c.id, RUNS.c.repo, RUNS.c.issue_number, RUNS.c.status)
    )


@cache
def sqlite_drop_claims(drop: str) -> ReturningDelete[Any]:
    """SQLite: give back the claims a completion's goal no longer needs; each row dropped also says
    whether the run's repository (``:repo``) has deferred runs (that the freed claims could wake)."""
    deferred = _has_deferred(bindparam("repo", type_=String))
    return _dropping([bindparam("lease_run_id", type_=String)], drop).returning(CLAIMS.c.kind,
                                                                                deferred.label("deferred"))


@cache
def has_deferred() -> Select[Any]:
    """Whether ``:repo`` has deferred runs (that freed claims could wake)."""
    return select(_has_deferred(bindparam("repo", type_=String)))


@cache
def advisory_lock() -> Any:
    """PostgreSQL: the transaction-scoped advisory lock ``:key``."""
    return select(func.pg_advisory_xact_lock(bindparam("key", type_=Integer)))


@cache
def pg_complete_many(columns: tuple[str, ...], drop: str, goal: str) -> Select[Any]:
    """PostgreSQL: fenced changes of several leases in one statement.

    The leases come as three arrays: ``:lease_ids``, ``:lease_attempts`` and ``:lease_owners``.

    Returns one row per held run (id, status before, whether it moved) plus the claims dropped
    and whether its repository has deferred runs. Nothing moves when any held run may not
    move to ``goal``."""
    held = (
        select(RUNS.c.id, RUNS.c.repo, RUNS.c.status, RUNS.c.attempt, RUNS.c.lease_owner)
        .where(tuple_(RUNS.c.id, RUNS.c.attempt, RUNS.c.lease_owner).in_(select(
            func.unnest(bindparam("lease_ids", type_=ARRAY(String))),
            func.unnest(bindparam("lease_attempts", type_=ARRAY(Integer))),
            func.unnest(bindparam("lease_owners", type_=ARRAY(String))),
        )))
        .order_by(RUNS.c.id)
        .with_for_update()
        .cte("held")
    )
    illegal = exists().where(held.c.status.not_in([_status_literal(s) for s in _movable_to(goal)]))
    moved = (
        update(RUNS)
        .where(RUNS.c.id == held.c.id, ~illegal)
        .values(_completion_values(columns, goal))
        .returning(RUNS.c.id, RUNS.c.repo, held.c.status.label("from_status"), held.c.attempt, held.c.lease_owner,
                   RUNS.c.status)
        .cte("moved")
    )
    payload = cast(func.json_build_object(
        literal_column("'actor'"), moved.c.lease_owner, literal_column("'attempt'"), moved.c.attempt,
    ), JSONB).op("||")(cast(bindparam("event_payload", type_=EVENTS.c.payload.type), JSONB))
    logged = insert(EVENTS).from_select(
        _EVENT_COLUMNS,
        select(moved.c.id, literal_column("'transition'"), moved.c.from_status, moved.c.status,
               cast(payload, JSON), cast(bindparam("stamp", type_=Float), Float)),
    ).cte("logged")
    freed: Any = literal_column("0")
    if drop != DROP_NONE:
        dropped = _dropping(select(moved.c.id), drop).returning(CLAIMS.c.kind).cte("dropped")
        freed = select(func.count()).select_from(dropped).scalar_subquery()
    waiting = _has_deferred(held.c.repo)
    return (
        select(held.c.id, held.c.repo, held.c.status, moved.c.status.label("moved_to"), freed.label("freed"),
               waiting.label("deferred"))
        .select_from(held.outerjoin(moved, moved.c.id == held.c.id))
        .add_cte(logged)
    )


@cache
def sqlite_drop_claims_of(drop: str) -> Delete:
    """SQLite: give back the claims of several runs (``:ids``) that a goal no longer needs."""
    return _dropping(bindparam("ids", expanding=True), drop)


@dataclass(frozen=True)
class DriverStatement:
    """A statement compiled for one dialect: its SQL text, the values of its literal parameters,
    the converters of parameters whose type needs one (JSON, for instance), the parameter order
    of positional drivers and the names of the result columns."""

    sql: str
    defaults: dict[str, Any]
    converters: dict[str, Callable[[Any], Any]]
    positions: tuple[str, ...] | None = None
    columns: tuple[str, ...] = ()

    def parameters(self, params: dict[str, Any]) -> dict[str, Any] | tuple[Any, ...]:
        """``params`` converted for the driver, with the literal parameters added (in order for
        drivers with positional parameters, such as SQLite's)."""
        converted = {**self.defaults, **params}
        for name, convert in self.converters.items():
            if name in params:
                converted[name] = convert(params[name])
        if self.positions is not None:
            return tuple(converted[name] for name in self.positions)
        return converted


@cache
def driver_sql(statement: ClauseElement, dialect: Dialect) -> DriverStatement:
    """``statement`` compiled once for ``dialect`` (the hot path then skips the per-call cache lookup)."""
    compiled = typing.cast(SQLCompiler, statement.compile(dialect=dialect))
    converters: dict[str, Callable[[Any], Any]] = {}
    for name, bind in compiled.binds.items():
        convert = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if convert is not None:
            converters[name] = convert
    positions = tuple(compiled.positiontup) if compiled.positional and compiled.positiontup is not None else None
    columns = tuple(column[0] for column in compiled._result_columns)
    return DriverStatement(compiled.string, dict(compiled.params), converters, positions, columns)

