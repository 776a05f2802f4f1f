"""Lease owner identity: host + pid + process start time, so a reused pid is not mistaken.

An owner string looks like ``host:pid:start`` or ``host:pid:start/name`` where
``host`` is the ``HOST_ID`` setting (host name + machine id by default, stable across
restarts), ``start`` is the process start time in clock ticks since boot (field 22 of
``/proc/<pid>/stat``) and ``name`` tells apart several claimers in one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from agentz_app.config import default_host_id
from agentz_app.errors import StoreError

_PROC = Path("/proc")


@dataclass(frozen=True)
class Owner:
    """A parsed owner string."""

    host: str
    pid: int
    start: int | None
    name: str = ""

    def __str__(self) -> str:
        start = "" if self.start is None else str(self.start)
        text = f"{self.host}:{self.pid}:{start}"
        return f"{text}/{self.name}" if self.name else text


def parse_owner(owner: str) -> Owner:
    """Parse ``host:pid:start[/name]``; raises StoreError on anything else."""
    head, _, name = owner.partition("/")
    parts = head.rsplit(":", 2)
    if len(parts) != 3 or not parts[0] or not parts[1].isdigit() or (parts[2] and not parts[2].isdigit()):
        raise StoreError(f"malformed lease owner {owner!r}")
    return Owner(host=parts[0], pid=int(parts[1]), start=int(parts[2]) if parts[2] else None, name=name)


def parse_stat_start_time(stat: str) -> int:
    """Extract the start time (field 22) from the text of ``/proc/<pid>/stat``."""
    # The command name (field 2) is in parentheses and may itself contain spaces or ')'.
    rest = stat[stat.rindex(")") + 2 :].split()
    return int(rest[19])  # rest[0] is field 3 (state), so field 22 is rest[19]


def process_start_time(pid: int, *, proc: Path = _PROC) -> int | None:
    """The start time of ``pid`` in clock ticks since boot, or None when it does not exist."""
    try:
        return parse_stat_start_time((proc / str(pid) / "stat").read_text())
    except (OSError, ValueError, IndexError):
        return None


def this_host() -> str:
    """The default host id (when no ``HOST_ID`` setting is at hand)."""
    return default_host_id()


def owner_host(owner: str) -> str | None:
    """The host id of an owner string, or None when it is malformed."""
    try:
        return parse_owner(owner).host
    except StoreError:
        return None


def current_owner(name: str = "", *, host: str | None = None) -> str:
    """The owner string of this process on ``host`` (``HOST_ID``), optionally qualified by a claimer ``name``."""
    pid = os.getpid()
    return str(Owner(host=host or this_host(), pid=pid, start=process_start_time(pid), name=name))


def owner_is_dead(owner: str, *, host: str | None = None, proc: Path = _PROC) -> bool:
    """True only when ``owner`` ran on this host (``host``, the ``HOST_ID``) and its process is gone or was replaced.

    Owners on other hosts and malformed owner strings are never declared dead here;
    their leases simply expire.
    """
    try:
        parsed = parse_owner(owner)
    except StoreError:
        return False
    if parsed.host != (host or this_host()):
        return False
    start = process_start_time(parsed.pid, proc=proc)
    if start is None:
        return True
    return parsed.start is not None and start != parsed.start
