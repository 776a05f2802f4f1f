"""Fault injection for the fake GitHub: API errors, rate limits, latency, delivery faults.

Decisions are drawn from one seeded :class:`random.Random`, so a run with the same seed
and the same request sequence injects the same faults.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

ApiFaultKind = Literal["server_error", "secondary_limit", "primary_limit"]
DeliveryFaultKind = Literal["drop", "duplicate", "out_of_order"]


@dataclass
class FaultConfig:
    """Rates are probabilities in [0, 1]; ``*_next`` counters force the next N faults."""

    seed: int = 0
    server_error_rate: float = 0.0
    secondary_limit_rate: float = 0.0
    primary_limit_rate: float = 0.0
    latency_seconds: float = 0.0
    retry_after_seconds: int = 1
    primary_reset_seconds: int = 1
    server_error_next: int = 0
    secondary_limit_next: int = 0
    primary_limit_next: int = 0
    duplicate_rate: float = 0.0
    out_of_order_rate: float = 0.0
    drop_rate: float = 0.0
    drop_next: int = 0
    duplicate_next: int = 0
    path_contains: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FaultConfig:
        """Build a config from JSON, rejecting unknown keys and out-of-range values."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for key, raw in data.items():
            kind = known[key].type
            if kind == "str":
                if not isinstance(raw, str):
                    raise ValueError(f"{key} must be a string")
                values[key] = raw
                continue
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                raise ValueError(f"{key} must be a number")
            if raw < 0:
                raise ValueError(f"{key} must not be negative")
            if key.endswith("_rate") and raw > 1:
                raise ValueError(f"{key} must be between 0 and 1")
            values[key] = int(raw) if kind == "int" else float(raw)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-able data."""
        return asdict(self)


class FaultInjector:
    """Draw API and delivery faults from a config and a seeded RNG."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self.config = config or FaultConfig()
        self.rng = random.Random(self.config.seed)

    def configure(self, config: FaultConfig) -> None:
        """Replace the config and reseed the RNG."""
        self.config = config
        self.rng = random.Random(config.seed)

    def api_fault(self, path: str) -> ApiFaultKind | None:
        """Pick the fault (if any) for one API request to ``path``."""
        cfg = self.config
        if cfg.path_contains and cfg.path_contains not in path:
            return None
        if cfg.server_error_next > 0:
            cfg.server_error_next -= 1
            return "server_error"
        if cfg.secondary_limit_next > 0:
            cfg.secondary_limit_next -= 1
            return "secondary_limit"
        if cfg.primary_limit_next > 0:
            cfg.primary_limit_next -= 1
            return "primary_limit"
        if self._draw(cfg.server_error_rate):
            return "server_error"
        if self._draw(cfg.secondary_limit_rate):
            return "secondary_limit"
        if self._draw(cfg.primary_limit_rate):
            return "primary_limit"
        return None

    def delivery_fault(self) -> DeliveryFaultKind | None:
        """Pick the fault (if any) for one outgoing webhook delivery."""
        cfg = self.config
        if cfg.drop_next > 0:
            cfg.drop_next -= 1
            return "drop"
        if cfg.duplicate_next > 0:
            cfg.duplicate_next -= 1
            return "duplicate"
        if self._draw(cfg.drop_rate):
            return "drop"
        if self._draw(cfg.duplicate_rate):
            return "duplicate"
        if self._draw(cfg.out_of_order_rate):
            return "out_of_order"
        return None

    def _draw(self, rate: float) -> bool:
        return rate > 0 and self.rng.random() < rate
