"""Pick a runner by backend name (the environment agents run with is :mod:`workers.runners.environment`)."""

from __future__ import annotations

from agentz_app.config import Settings
from agentz_app.domain.runner import Runner
from agentz_app.errors import ConfigError
from workers.runners.claude import ClaudeRunner
from workers.runners.codex import CodexRunner
from workers.runners.environment import agent_env, provider_env
from workers.runners.opencode import OpenCodeRunner
from workers.runners.scripted import ScriptedRunner

__all__ = ["BACKENDS", "agent_env", "get_runner", "provider_env"]

BACKENDS = ("claude", "codex", "opencode", "scripted")


def get_runner(backend: str, settings: Settings) -> Runner:
    """The runner for ``backend`` (claude, codex, opencode or scripted)."""
    if backend == "claude":
        return ClaudeRunner(settings)
    if backend == "codex":
        return CodexRunner(settings)
    if backend == "opencode":
        return OpenCodeRunner(settings)
    if backend == "scripted":
        return ScriptedRunner(settings)
    raise ConfigError("DEFAULT_BACKEND", f"unknown agent backend {backend!r}; choose one of {', '.join(BACKENDS)}")
