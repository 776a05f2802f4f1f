"""Database size under retention: deliveries keep arriving, the daily prune keeps the file flat.

``python -m bench retention [--days 100] [--per-day 1000] [--payload-bytes 4000]`` simulates
``--days`` days on a real SQLite file (WAL, ``synchronous=NORMAL``): every simulated day
``--per-day`` webhook deliveries arrive (group-committed like the receiver does) and are
processed, one more stays pending for good, and a reconciler asks to prune four times a day
(:func:`agentz_app.store.retention.prune_if_due` on a simulated clock, so only the first
ask of each day prunes). It prints one line every tenth of the run::

    retention: day=<n> stored=<n> rows=<n> db_mb=<n> wal_mb=<n>

and a final line::

    retention: deliveries=<n> days=<n> retain_days=14 prunes=<n> horizon_mb=<n> final_mb=<n> ratio=<n> lost=<n>

``horizon_mb`` is the database file (plus its WAL) at the end of the day the first
deliveries passed RETAIN_DELIVERIES_DAYS, ``final_mb`` at the end of the run; ``ratio`` is
final / horizon (target ≤ 1.2: the file stops growing once pruning keeps pace). ``lost``
counts pending deliveries that are gone (must be 0). ``--quick`` runs 30 days of 200
deliveries.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import BenchOptions, Figures, sqlite_database

DAY = 86400.0
START = 1_700_000_000.0
RETAIN_DAYS = 14
PRUNE_ASKS_PER_DAY = 4
INSERT_BATCH = 500


class SimulatedClock:
    """A clock the scenario moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def parse(extra: Sequence[str], quick: bool) -> argparse.Namespace:
    """The scenario's own options."""
    parser = argparse.ArgumentParser(prog="python -m bench retention")
    parser.add_argument("--days", type=int, default=30 if quick else 100)
    parser.add_argument("--per-day", type=int, default=200 if quick else 1000)
    parser.add_argument("--payload-bytes", type=int, default=2000 if quick else 4000)
    args, _ = parser.parse_known_args(list(extra))
    return args


def payload_text(size: int, index: int) -> str:
    """A JSON webhook-like payload of about ``size`` bytes."""
    def body(text: str) -> str:
        return json.dumps({"action": "created", "installation": {"id": 1},
                           "repository": {"full_name": "bench/retention"}, "comment": {"id": index, "body": text}})

    filler = max(0, size - len(body("")))
    return body(("lorem ipsum " * (filler // 12 + 1))[:filler])


def day_rows(day: int, per_day: int, payload: str) -> list[dict[str, Any]]:
    """The inbox rows arriving on ``day``, spread over the day; the last one stays pending."""
    from agentz_app.ingress.inbox import delivery_row

    data = json.loads(payload)
    spacing = DAY / (per_day + 1)
    return [
        delivery_row(delivery_id=f"d{day:04d}-{index:06d}", event="issue_comment", payload_text=payload, data=data,
                     received_at=START + day * DAY + index * spacing)
        for index in range(per_day + 1)
    ]


def file_mb(path: Path) -> float:
    """Size of ``path`` in MB (0 when missing)."""
    return path.stat().st_size / 1e6 if path.exists() else 0.0


def simulate(url: str, state_dir: Path, days: int, per_day: int, payload_bytes: int) -> list[Figures]:
    """Run the simulation on the database at ``url`` and return the printed lines."""
    from sqlalchemy import func, select, update

    from agentz_app.config import Settings
    from agentz_app.ingress.inbox import insert_deliveries
    from agentz_app.store.db import Database
    from agentz_app.store.models import Delivery
    from agentz_app.store.retention import prune_if_due

    settings = Settings.load(None, database_url=url, state_dir=state_dir, retain_deliveries_days=RETAIN_DAYS)
    db = Database.from_url(url)
    db_path = Path(url.removeprefix("sqlite:///"))
    wal_path = db_path.with_name(db_path.name + "-wal")
    clock = SimulatedClock(START)
    payload = payload_text(payload_bytes, 0)
    lines: list[Figures] = []
    pending_ids: list[str] = []
    prunes = 0
    horizon_mb = 0.0
    every = max(1, days // 10)
    try:
        for day in range(days):
            rows = day_rows(day, per_day, payload)
            pending_ids.append(rows[-1]["delivery_id"])
            for start in range(0, len(rows), INSERT_BATCH):
                insert_deliveries(db, rows[start:start + INSERT_BATCH])
            with db.begin() as session:  # the inbox processed everything but the last one
                session.execute(update(Delivery).where(Delivery.processed_at.is_(None),
                                                       Delivery.delivery_id.not_in(pending_ids))
                                .values(processed_at=Delivery.received_at + 1.0))
            for ask in range(PRUNE_ASKS_PER_DAY):
                clock.now = START + (day + 1) * DAY + ask * DAY / PRUNE_ASKS_PER_DAY
                if prune_if_due(db, settings, clock=clock) is not None:
                    prunes += 1
            size = file_mb(db_path) + file_mb(wal_path)
            if day == RETAIN_DAYS:
                horizon_mb = size
            if (day + 1) % every == 0 or day == days - 1:
                with db.read() as session:
                    stored = session.scalar(select(func.count()).select_from(Delivery))
                lines.append({"day": day + 1, "stored": (day + 1) * (per_day + 1), "rows": int(stored or 0),
                              "db_mb": file_mb(db_path), "wal_mb": file_mb(wal_path)})
        with db.read() as session:
            kept = set(session.scalars(select(Delivery.delivery_id).where(Delivery.delivery_id.in_(pending_ids))))
        final_mb = file_mb(db_path) + file_mb(wal_path)
    finally:
        db.dispose()
    lines.append({
        "deliveries": days * (per_day + 1), "days": days, "retain_days": RETAIN_DAYS, "prunes": prunes,
        "horizon_mb": horizon_mb, "final_mb": final_mb,
        "ratio": final_mb / horizon_mb if horizon_mb else float("nan"),
        "lost": len(pending_ids) - len(kept),
    })
    return lines


def scenario(options: BenchOptions) -> list[Figures]:
    """The benchmark entry point."""
    from agentz_app.logs import configure_logging

    configure_logging("console", "warning")
    args = parse(options.extra, options.quick)
    with sqlite_database() as url, tempfile.TemporaryDirectory(prefix="agentz-bench-state-") as state:
        return simulate(url, Path(state), args.days, args.per_day, args.payload_bytes)
