"""One exception root for Agent-Z, with subclasses carrying structured fields."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class AgentZError(Exception):
    """Root of every error Agent-Z raises on purpose."""


class ConfigError(AgentZError):
    """A configuration value is missing or invalid; ``variable`` names it."""

    def __init__(self, variable: str, message: str) -> None:
        self.variable = variable
        super().__init__(f"{variable}: {message}")


class GitHubError(AgentZError):
    """GitHub answered with an error status."""

    def __init__(
        self,
        status_code: int,
        message: str = "",
        *,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> None:
        self.status_code = status_code
        self.headers = dict(headers or {})
        self.body = body
        super().__init__(f"GitHub returned {status_code}: {message}".rstrip(": "))


class RateLimited(GitHubError):
    """The primary rate limit is exhausted until ``reset_at`` (epoch seconds)."""

    def __init__(self, status_code: int, reset_at: float, **kwargs: Any) -> None:
        self.reset_at = reset_at
        super().__init__(status_code, f"rate limited until {reset_at:.0f}", **kwargs)


class SecondaryRateLimited(GitHubError):
    """A secondary rate limit asked us to wait ``retry_after`` seconds."""

    def __init__(self, status_code: int, retry_after: float, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(status_code, f"secondary rate limit, retry after {retry_after:.0f}s", **kwargs)


class StoreError(AgentZError):
    """A database operation could not be carried out."""


class LeaseLost(StoreError):
    """The caller no longer holds the lease (fencing token is stale)."""

    def __init__(self, run_id: str, attempt: int) -> None:
        self.run_id = run_id
        self.attempt = attempt
        super().__init__(f"run {run_id}: lease for attempt {attempt} is no longer held")


class IllegalTransition(StoreError):
    """A run state change that the state machine does not allow."""

    def __init__(self, run_id: str, current: str, target: str) -> None:
        self.run_id = run_id
        self.current = current
        self.target = target
        super().__init__(f"run {run_id}: illegal transition {current} -> {target}")


class NotFound(StoreError):
    """A record that was asked for does not exist."""


class RunnerError(AgentZError):
    """An agent backend failed."""


class AgentTimeout(RunnerError):
    """The agent process ran past its timeout and was killed with its group."""


class InvalidAgentOutput(RunnerError):
    """The agent's structured output failed validation; ``raw`` keeps the text."""

    def __init__(self, message: str, *, raw: str = "") -> None:
        self.raw = raw
        super().__init__(message)
