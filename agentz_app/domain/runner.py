"""The runner contract every agent backend implements.

``run(role, prompt, workdir, session_id, timeout, env) -> RunnerResult``. A runner
never raises for a failing agent: it reports ``exit_code`` and ``error``. It raises
:class:`~agentz_app.errors.AgentTimeout` only after killing the agent's process group.
Every call runs in the sandbox of :mod:`workers.sandbox`: ``workdir`` and the agent's
private home are writable, ``read_only`` paths (such as the mirror's object store the
working copy borrows from) readable, nothing else of the host's state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

LogSink = Callable[[str], None]


@dataclass(frozen=True)
class RunnerResult:
    exit_code: int
    session_id: str | None
    text: str
    json: Any = None
    cost_usd: float = 0.0
    tokens: int = 0
    duration: float = 0.0
    error: str | None = None
    permission_denials: list[str] = field(default_factory=list)
    network_blocked: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.error is None and not self.permission_denials


class Runner(Protocol):
    """One agent backend (claude, codex, opencode, scripted)."""

    name: str

    async def run(
        self,
        role: str,
        prompt: str,
        workdir: Path,
        *,
        session_id: str | None = None,
        timeout: float,
        env: Mapping[str, str] | None = None,
        log: LogSink | None = None,
        read_only: Sequence[Path] = (),
    ) -> RunnerResult: ...
