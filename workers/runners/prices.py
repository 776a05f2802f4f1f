"""What an agent call may cost before it is made, for the per-run cost cap.

The estimate is the prompt's tokens at the model's input price plus
:data:`OUTPUT_ALLOWANCE_TOKENS` at its output price. Tokens are counted as
:data:`CHARS_PER_TOKEN` characters each (fewer characters per token than real
tokenizers average, so the count errs high). The pipeline takes the larger of this
and the dearest call the run has made so far.

Prices are US dollars per million tokens, matched by model family (a substring of
the configured ``AGENTZ_<BACKEND>_MODEL`` or ``AGENTZ_MODEL``); a backend without a
configured model uses its CLI's usual default family, and an unknown model the
dearest family (:data:`CONSERVATIVE`). The scripted backend costs nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Price:
    """US dollars per million input and output tokens."""

    input_per_mtok: float
    output_per_mtok: float


CONSERVATIVE = Price(15.0, 75.0)
FREE = Price(0.0, 0.0)

# Model family (lower-case substring of the model name) → price; the first match wins.
FAMILY_PRICES: tuple[tuple[str, Price], ...] = (
    ("opus", Price(15.0, 75.0)),
    ("sonnet", Price(3.0, 15.0)),
    ("haiku", Price(1.0, 5.0)),
    ("gpt-5-nano", Price(0.05, 0.4)),
    ("gpt-5-mini", Price(0.25, 2.0)),
    ("gpt-5", Price(1.25, 10.0)),
    ("o3", Price(2.0, 8.0)),
    ("gpt-4.1", Price(2.0, 8.0)),
)

# The family each backend's CLI uses when no model is configured.
BACKEND_FAMILY = {"claude": "sonnet", "codex": "gpt-5"}

CHARS_PER_TOKEN = 3
OUTPUT_ALLOWANCE_TOKENS = 8_000


def configured_model(backend: str, variables: Mapping[str, str]) -> str | None:
    """The model a backend's agents are configured with, as the runners read it."""
    return variables.get(f"AGENTZ_{backend.upper()}_MODEL") or variables.get("AGENTZ_MODEL") or None


def price_for(backend: str, model: str | None) -> Price:
    """The price table entry for ``backend`` running ``model``."""
    if backend == "scripted":
        return FREE
    family = (model or BACKEND_FAMILY.get(backend, "")).lower()
    return next((price for name, price in FAMILY_PRICES if family and name in family), CONSERVATIVE)


def estimate_call_cost(backend: str, model: str | None, prompt_chars: int) -> float:
    """An upper estimate, in US dollars, of one call with a prompt of ``prompt_chars`` characters."""
    price = price_for(backend, model)
    prompt_tokens = -(-prompt_chars // CHARS_PER_TOKEN)
    return (prompt_tokens * price.input_per_mtok + OUTPUT_ALLOWANCE_TOKENS * price.output_per_mtok) / 1_000_000
