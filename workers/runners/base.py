"""The runner contract every agent backend implements.

``run(role, prompt, workdir, session_id, timeout, env) -> RunnerResult``. A runner
never raises for a failing agent: it reports ``exit_code`` and ``error``. It raises
:class:`~agentz_app.errors.AgentTimeout` only after killing the agent's process group.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
    ) -> RunnerResult: ...
