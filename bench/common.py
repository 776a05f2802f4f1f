"""Shared benchmark plumbing: scenario type, output formatting, throw-away databases, audits."""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Figures = dict[str, Any]


@dataclass(frozen=True)
class BenchOptions:
    """What every scenario receives: the quick flag, the arguments it may parse itself and the
    invocation's shared PostgreSQL server (None: a scenario starts its own)."""

    quick: bool = False
    extra: Sequence[str] = field(default_factory=tuple)
    postgres: SharedPostgres | None = None


# A scenario returns one dict of figures, or several (one printed line each).
Scenario = Callable[[BenchOptions], "Figures | list[Figures]"]


# Figures that must be zero: ``python -m bench --check`` fails when any result has one above 0.
# ``missed_targets`` counts a scenario's performance targets that were not met.
CORRECTNESS_KEYS: tuple[str, ...] = (
    "lost",
    "duplicated",
    "double_claims",
    "duplicate_prs",
    "duplicate_comments",
    "lost_runs",
    "lost_commits",
    "missed_targets",
)


def format_value(value: Any) -> str:
    """Render one figure: floats with two decimals below 10, one below 1000, none above."""
    if isinstance(value, float):
        if abs(value) < 10:
            return f"{value:.2f}"
        return f"{value:.1f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def failed_checks(results: Iterable[tuple[str, Figures]]) -> list[str]:
    """``scenario: key=value`` for every correctness figure that is not zero."""
    failures = []
    for name, figures in results:
        for key in CORRECTNESS_KEYS:
            value = figures.get(key)
            if value is not None and value != 0:
                failures.append(f"{name}: {key}={format_value(value)}")
    return failures


def format_line(name: str, figures: Figures) -> str:
    """``name: key=value key=value`` in insertion order."""
    return f"{name}: " + " ".join(f"{key}={format_value(value)}" for key, value in figures.items())


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of ``values`` (0.0 for none)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def format_json(results: Iterable[tuple[str, Figures]]) -> str:
    """A JSON list of ``{"scenario": name, ...figures}`` objects."""
    return json.dumps([{"scenario": name, **figures} for name, figures in results], indent=2, default=str)


@contextmanager
def sqlite_database() -> Iterator[str]:
    """A migrated SQLite file in a temporary folder; yields its URL."""
    from agentz_app.store.db import Database
    from agentz_app.store.migrate import migrate

    with tempfile.TemporaryDirectory(prefix="agentz-bench-", ignore_cleanup_errors=True) as folder:
        url = f"sqlite:///{Path(folder) / 'bench.db'}"
        db = Database.from_url(url)
        migrate(db)
        db.dispose()
        yield url


_TEMPLATE = "bench_template"


@contextmanager
def _own_postgres_server() -> Iterator[Callable[[str], str]]:
    """Start an ephemeral PostgreSQL server with one migrated template database; stop it on exit."""
    import psycopg

    from agentz_app.store.db import Database
    from agentz_app.store.ephemeral_pg import EphemeralPostgres
    from agentz_app.store.migrate import migrate

    with EphemeralPostgres() as server:
        db = Database.from_url(server.create_database(_TEMPLATE))
        migrate(db)
        db.dispose()

        def create(name: str) -> str:
            # A copy of the migrated template: no migration run per database.
            with psycopg.connect(server.url, autocommit=True) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
                connection.execute(f'CREATE DATABASE "{name}" TEMPLATE "{_TEMPLATE}"')
            return f"postgresql://postgres@127.0.0.1:{server.port}/{name}"

        yield create


class SharedPostgres:
    """One ephemeral PostgreSQL server for a whole ``python -m bench`` invocation.

    The first scenario that needs it starts it: :meth:`start` begins on a thread (so it
    overlaps the scenario's own start-up), :meth:`wait` or the first :meth:`create` waits
    for it. Later scenarios reuse it; :meth:`close` stops it.
    """

    def __init__(self) -> None:
        self._stack = ExitStack()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-postgres")
        self._server: Future[Callable[[str], str]] | None = None

    def start(self) -> None:
        """Start the server in the background (once)."""
        if self._server is None:
            self._server = self._pool.submit(self._stack.enter_context, _own_postgres_server())

    def wait(self) -> None:
        """Block until the server runs (raising what starting it raised)."""
        self.start()
        assert self._server is not None
        self._server.result(timeout=180)

    def create(self, name: str) -> str:
        """A fresh migrated database on the shared server; returns its URL."""
        self.wait()
        assert self._server is not None
        return self._server.result()(name)

    def close(self) -> None:
        """Stop the server (after it finished starting)."""
        if self._server is not None:
            self._server.exception()
        self._pool.shutdown()
        self._stack.close()


@contextmanager
def postgres_server(shared: SharedPostgres | None = None) -> Iterator[Callable[[str], str]]:
    """An ephemeral PostgreSQL server (``shared``'s, or one of its own stopped on exit); yields a
    function creating a migrated database by name."""
    if shared is not None:
        shared.wait()  # started before the scenario: it waits here as for a server of its own
        yield shared.create
        return
    with _own_postgres_server() as create:
        yield create


def postgres_available() -> bool:
    """True when PostgreSQL server binaries are installed."""
    from agentz_app.store.ephemeral_pg import find_pg_bin

    return find_pg_bin() is not None


_RELEASING_KINDS = frozenset({"released", "lease_revoked", "adopted"})
_LEASED = frozenset({"planning", "developing", "reviewing", "fixing", "submitting", "fixing_ci"})


@dataclass(frozen=True)
class EventRow:
    """The event fields the lease audit needs."""

    run_id: str
    kind: str
    to_status: str | None
    payload: dict[str, Any]


def count_double_claims(events: Iterable[EventRow]) -> int:
    """Count claims that broke exclusivity, from the event log in commit order.

    A claim is double when the same (run, attempt) was claimed before, or when the
    run's previous lease was still held (claimed and not yet released by a status
    change, a release, a revocation or an operator's change).
    """
    seen: set[tuple[str, int]] = set()
    holder: dict[str, str | None] = {}
    doubles = 0
    for event in events:
        if event.kind == "claimed":
            key = (event.run_id, int(event.payload.get("attempt", -1)))
            if key in seen or holder.get(event.run_id) is not None:
                doubles += 1
            seen.add(key)
            holder[event.run_id] = str(event.payload.get("owner"))
        elif event.kind in _RELEASING_KINDS:
            holder[event.run_id] = None
        elif event.kind == "transition":
            by_holder = event.payload.get("actor") == holder.get(event.run_id)
            if event.to_status not in _LEASED or not by_holder:
                holder[event.run_id] = None
    return doubles


def load_events(url: str) -> list[EventRow]:
    """Every run event of a database in commit (id) order."""
    from sqlalchemy import select

    from agentz_app.store.db import Database
    from agentz_app.store.models import Event

    db = Database.from_url(url)
    try:
        with db.read() as session:
            rows = session.execute(
                select(Event.run_id, Event.kind, Event.to_status, Event.payload)
                .where(Event.run_id.is_not(None))
                .order_by(Event.id)
            ).all()
    finally:
        db.dispose()
    return [EventRow(str(r[0]), r[1], r[2], dict(r[3] or {})) for r in rows]
