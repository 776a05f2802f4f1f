"""Pure rendering of runs for the command line: table rows, detail records, timelines.

Stored text (errors, plans, event payloads) came partly from agents: every view is redacted
(secrets recognised by shape, plus the ``secret_values`` passed in).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from agentz_app.logs import redact_value
from agentz_app.reporting.costs import call_costs, cost_lines
from agentz_app.secrets import Redactor
from agentz_app.store.models import Event, Run

COLUMNS = ("id", "issue", "status", "stage", "lease", "age", "pr", "error")
_ERROR_WIDTH = 60


def format_duration(seconds: float) -> str:
    """A compact duration: ``45s``, ``3m``, ``2h05m``, ``3d4h``; negative values count as 0."""
    total = max(0, int(seconds))
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m"
    if total < 86400:
        return f"{total // 3600}h{total % 3600 // 60:02d}m"
    return f"{total // 86400}d{total % 86400 // 3600}h"


def lease_text(run: Run, now: float) -> str:
    """``owner (12s)`` while leased, ``owner (expired 5s ago)`` once expired, ``-`` otherwise."""
    if run.lease_owner is None:
        return "-"
    remaining = (run.lease_expires_at or 0.0) - now
    if remaining >= 0:
        return f"{run.lease_owner} ({format_duration(remaining)})"
    return f"{run.lease_owner} (expired {format_duration(-remaining)} ago)"


def _one_line(text: str | None, width: int = _ERROR_WIDTH) -> str:
    if not text:
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def run_row(run: Run, now: float, *, secret_values: Sequence[str] = ()) -> dict[str, str]:
    """One table row for ``runs list``, redacted."""
    row = {
        "id": run.id,
        "issue": f"{run.repo}#{run.issue_number}",
        "status": run.status,
        "stage": run.stage or "",
        "lease": lease_text(run, now),
        "age": format_duration(now - run.created_at),
        "pr": f"#{run.pr_number}" if run.pr_number is not None else "",
        "error": _one_line(run.error),
    }
    redact = Redactor(tuple(secret_values))
    return {key: redact(value) for key, value in row.items()}


def render_table(rows: Sequence[dict[str, str]], columns: Sequence[str] = COLUMNS) -> str:
    """Left-aligned plain-text table with an upper-case header."""
    widths = {c: max([len(c)] + [len(row.get(c, "")) for row in rows]) for c in columns}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip()]
    lines += ["  ".join(row.get(c, "").ljust(widths[c]) for c in columns).rstrip() for row in rows]
    return "\n".join(lines)


def runs_table(runs: Sequence[Run], now: float, *, secret_values: Sequence[str] = ()) -> str:
    """The ``runs list`` table, redacted, or a short note when there are no runs."""
    if not runs:
        return "no runs"
    return render_table([run_row(run, now, secret_values=secret_values) for run in runs])


def run_record(run: Run, *, secret_values: Sequence[str] = ()) -> dict[str, Any]:
    """Every column of a run as JSON-ready, redacted data."""
    record = {column: getattr(run, column) for column in (c.key for c in Run.__table__.columns)}
    redacted: dict[str, Any] = redact_value(record, Redactor(tuple(secret_values)))
    return redacted


def event_record(event: Event, *, secret_values: Sequence[str] = ()) -> dict[str, Any]:
    """An event as JSON-ready, redacted data."""
    record = {
        "id": event.id, "at": event.created_at, "kind": event.kind, "from": event.from_status,
        "to": event.to_status, "payload": event.payload,
    }
    redacted: dict[str, Any] = redact_value(record, Redactor(tuple(secret_values)))
    return redacted


def format_timestamp(epoch: float) -> str:
    """UTC ``YYYY-MM-DD HH:MM:SS``."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))


def format_timeline(events: Sequence[Event]) -> str:
    """One line per event: time, kind, status change and payload."""
    lines = []
    for event in events:
        change = f" {event.from_status or '-'} -> {event.to_status}" if event.to_status else ""
        details = " ".join(f"{k}={v}" for k, v in sorted(event.payload.items()))
        lines.append(f"{format_timestamp(event.created_at)}  {event.kind}{change}  {details}".rstrip())
    return "\n".join(lines)


def render_inspect(
    run: Run, events: Sequence[Event], claims: Sequence[str], now: float, *, secret_values: Sequence[str] = ()
) -> str:
    """The ``runs inspect`` text, redacted: state, plan, claims and the event timeline."""
    plan = run.plan or {}
    lines = [
        f"run {run.id}  {run.repo}#{run.issue_number}  {run.title}".rstrip(),
        f"status: {run.status}  stage: {run.stage or '-'}  attempt: {run.attempt}"
        f"  infra attempts: {run.infra_attempts}  mode: {run.mode}",
        f"lease: {lease_text(run, now)}  age: {format_duration(now - run.created_at)}",
        f"branch: {run.branch or '-'}  PR: {('#' + str(run.pr_number)) if run.pr_number else '-'}"
        f"  head: {run.head_sha or '-'}  checkpoint: {run.checkpoint_sha or '-'}",
        f"cost: ${run.cost_usd:.2f}  tokens: {run.tokens}",
        f"claims: {', '.join(claims) or '-'}",
    ]
    if run.error:
        lines.append(f"error: {run.error}")
    if plan:
        lines.append("plan:")
        summary = plan.get("summary") or plan.get("title")
        if summary:
            lines.append(f"  {summary}")
        for key in ("steps", "files", "tasks"):
            for item in plan.get(key) or []:
                lines.append(f"  - {item if isinstance(item, str) else json.dumps(item, default=str)}")
    calls = call_costs(events)
    if calls:
        lines.append("agent calls:")
        lines += ["  " + line for line in cost_lines(calls)]
    lines.append("events:")
    timeline = format_timeline(events)
    lines += ["  " + line for line in timeline.splitlines()] if timeline else ["  (none)"]
    return Redactor(tuple(secret_values))("\n".join(lines))
