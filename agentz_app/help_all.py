"""``agentz help-all``: every command by area and every setting with its default.

The settings list is read from :class:`~agentz_app.config.Settings` itself, so it
cannot drift from what Agent-Z accepts.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from enum import Enum
from pathlib import Path
from typing import Any

import click
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from agentz_app.config import Settings

# Long-running roles `agentz serve` supervises (one process pool).
POOL_COMMANDS = ("serve", "receiver", "planner", "worker", "scheduler", "reconciler")
# One pass of a role, for scripting and for tuning the settings below.
TUNING_COMMANDS = ("plan-next", "run-next", "schedule-once", "reconcile-once", "doctor", "prune")


def setting_default(info: FieldInfo) -> str:
    """A field's default as it would be written in ``.env`` (``(unset)`` when there is none)."""
    if info.default_factory is not None:
        value: Any = info.default_factory()  # type: ignore[call-arg]
    elif info.default is PydanticUndefined:
        return "(required)"
    else:
        value = info.default
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value) or "(empty)"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, Path):
        return str(value)
    return str(value)


def settings_defaults() -> list[tuple[str, str]]:
    """(VARIABLE, default) for every setting, in declaration order."""
    return [(name.upper(), setting_default(info)) for name, info in Settings.model_fields.items()]


def _commands(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name in sorted(group.commands):
        command = group.commands[name]
        full = f"{prefix}{name}"
        if isinstance(command, click.Group):
            yield from _commands(command, f"{full} ")
        else:
            yield full, command


def render_help_all(root: click.Group, aliases: Mapping[str, Sequence[str]]) -> str:
    """The text of ``agentz help-all``."""
    spelled = {" ".join(target): flag for flag, target in aliases.items()}
    commands = dict(_commands(root))
    width = max(len(name) for name in commands) + 2

    def line(name: str) -> str:
        alias = f"  (also {spelled[name]})" if name in spelled else ""
        return f"  {name.ljust(width)}{commands[name].get_short_help_str(limit=90)}{alias}"

    grouped = set(POOL_COMMANDS) | set(TUNING_COMMANDS)
    out = ["Pool roles (run together by `agentz serve`, or one per process):"]
    out += [line(name) for name in POOL_COMMANDS if name in commands]
    out += ["", "One-shot and tuning commands:"]
    out += [line(name) for name in TUNING_COMMANDS if name in commands]
    out += ["", "Other commands:"]
    out += [line(name) for name in commands if name not in grouped]
    out += ["", "Settings (environment or .env; default shown):"]
    defaults = settings_defaults()
    name_width = max(len(name) for name, _ in defaults) + 2
    out += [f"  {name.ljust(name_width)}{default}" for name, default in defaults]
    return "\n".join(out)
