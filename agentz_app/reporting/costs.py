"""Tokens and cost of each agent call of a run, read from its ``agent_call`` events."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from agentz_app.store.models import Event


@dataclass(frozen=True)
class CallCost:
    """One agent call: who made it, what it cost, how long it took."""

    role: str
    cost_usd: float
    tokens: int
    duration: float


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if number >= 0 else 0.0


def call_costs(events: Iterable[Event]) -> list[CallCost]:
    """The run's agent calls in order (payload values that are not numbers count as 0)."""
    return [
        CallCost(str(event.payload.get("role") or "?"), _number(event.payload.get("cost_usd")),
                 int(_number(event.payload.get("tokens"))), _number(event.payload.get("duration")))
        for event in events if event.kind == "agent_call"
    ]


def cost_lines(calls: Iterable[CallCost]) -> list[str]:
    """``role  $0.12  3,400 tokens  45.0s`` per call, aligned."""
    listed = list(calls)
    width = max((len(call.role) for call in listed), default=0)
    return [f"{call.role.ljust(width)}  ${call.cost_usd:.4f}  {call.tokens:,} tokens  {call.duration:.1f}s"
            for call in listed]


def cost_markdown(calls: Iterable[CallCost], *, limit_usd: float | None = None) -> str:
    """A Markdown table of the calls with the run's total (and the cap, when given)."""
    listed = list(calls)
    total = sum(call.cost_usd for call in listed)
    tokens = sum(call.tokens for call in listed)
    cap = f" of the ${limit_usd:.2f} cap" if limit_usd is not None else ""
    lines = [f"**Cost**: ${total:.2f}{cap}, {tokens:,} tokens, {len(listed)} agent call"
             f"{'s' if len(listed) != 1 else ''}"]
    if listed:
        lines += ["", "| agent | cost | tokens |", "|---|---:|---:|"]
        lines += [f"| {call.role} | ${call.cost_usd:.4f} | {call.tokens:,} |" for call in listed]
    return "\n".join(lines)
