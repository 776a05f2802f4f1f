"""A pydantic field type for regular expressions written by users in step files."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator


def compiles(value: str) -> str:
    """``value`` unchanged if it is a valid regular expression; ValueError naming the problem otherwise."""
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    return value


Pattern = Annotated[str, AfterValidator(compiles)]
