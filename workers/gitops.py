"""A thin git layer for trusted code: every call goes through :func:`agentz_app.procs.run_process`.

Credentials never appear in a URL, an argument or a log line: for remote
operations the installation token is handed to git through a one-line credential
helper that reads it from an environment variable set only for that process.

Remote operations (fetch, push, ls-remote) go through :func:`git_remote`, which
retries network failures with the same bounded exponential backoff as the GitHub
API client (``GITHUB_RETRY_ATTEMPTS`` attempts in all); an authentication failure or
a rejected push is never retried.

Every call ignores the host's system and global git configuration and runs no
hook and no fsmonitor (:data:`HARDENING`), whatever a repository's own config says:
trusted git must never execute something an agent could have planted.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, wait_exponential

from agentz_app.config import SECRET_VARIABLES
from agentz_app.errors import AgentTimeout, AgentZError
from agentz_app.logs import get_logger, redact_text
from agentz_app.procs import ProcessResult, run_process

log = get_logger(__name__)

TOKEN_VARIABLE = "AGENTZ_GIT_TOKEN"
AUTHOR_NAME = "Agent-Z"
AUTHOR_EMAIL = "agent-z@users.noreply.github.com"
# Reads the token from the environment only when git asks for credentials.
_CREDENTIAL_HELPER = (
    f'!f() {{ test "$1" = get || exit 0; echo username=x-access-token; echo "password=${TOKEN_VARIABLE}"; }}; f'
)


# Options on every trusted git call: no hooks, no fsmonitor, only the transports we use.
HARDENING = (
    "-c", "core.hooksPath=/dev/null",
    "-c", "core.fsmonitor=false",
    "-c", "core.untrackedCache=false",
    "-c", "protocol.allow=never",
    "-c", "protocol.https.allow=always",
    "-c", "protocol.http.allow=always",
    "-c", "protocol.ssh.allow=always",
    "-c", "protocol.file.allow=always",
    "-c", "gc.auto=0",
)


class GitError(AgentZError):
    """A git command failed; ``stderr`` is already redacted."""

    def __init__(self, args: Sequence[str], exit_code: int, stderr: str) -> None:
        self.exit_code = exit_code
        self.stderr = redact_text(stderr.strip())
        command = " ".join(args[:3])
        super().__init__(f"{command} exited {exit_code}: {self.stderr[-500:]}")


def git_env(token: str | None = None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a git child: no secrets except the token for the credential helper."""
    env = {key: value for key, value in os.environ.items() if key.upper() not in SECRET_VARIABLES}
    env.update(
        {
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_AUTHOR_NAME": AUTHOR_NAME,
            "GIT_AUTHOR_EMAIL": AUTHOR_EMAIL,
            "GIT_COMMITTER_NAME": AUTHOR_NAME,
            "GIT_COMMITTER_EMAIL": AUTHOR_EMAIL,
        }
    )
    env.update(extra or {})
    if token:
        env[TOKEN_VARIABLE] = token
    return env


def credential_args(token: str | None) -> list[str]:
    """``-c`` options that install the token credential helper (none without a token)."""
    if not token:
        return []
    return ["-c", "credential.helper=", "-c", f"credential.helper={_CREDENTIAL_HELPER}"]


async def git(
    *args: str,
    cwd: Path | str,
    token: str | None = None,
    timeout: float = 300.0,
    check: bool = True,
    stdin: str | None = None,
    env: Mapping[str, str] | None = None,
) -> ProcessResult:
    """Run ``git args`` in ``cwd``; raise :class:`GitError` on a non-zero exit when ``check``.

    ``env`` adds variables (``GIT_DIR``, ``GIT_WORK_TREE``, ``GIT_INDEX_FILE``, dates).
    """
    argv = ["git", *HARDENING, *credential_args(token), *args]
    result = await run_process(argv, cwd=cwd, env=git_env(token, env), timeout=timeout, stdin=stdin)
    if check and result.exit_code != 0:
        raise GitError(list(args), result.exit_code, result.stderr)
    return result


async def git_out(
    *args: str, cwd: Path | str, token: str | None = None, timeout: float = 300.0, env: Mapping[str, str] | None = None
) -> str:
    """Run git and return its stripped standard output."""
    return (await git(*args, cwd=cwd, token=token, timeout=timeout, env=env)).stdout.strip()


# Redacted stderr of a remote failure that another attempt cannot fix: bad or missing
# credentials, and pushes the remote refused (not fast-forward, a stale lease, a hook).
PERMANENT_REMOTE_ERRORS = (
    "Authentication failed",
    "could not read Username",
    "could not read Password",
    "[rejected]",
    "[remote rejected]",
    "non-fast-forward",
    "stale info",
    "couldn't find remote ref",  # a ref the remote does not have (no checkpoint yet) will not appear by waiting
)


def is_permanent_failure(result: ProcessResult) -> bool:
    """True when a failed remote git call must not be retried (see :data:`PERMANENT_REMOTE_ERRORS`).

    git exits 128 for fatal errors (network, authentication) and 1 for a refused push;
    any other exit code is not a network problem either.
    """
    if result.exit_code not in (1, 128):
        return True
    stderr = redact_text(result.stderr)
    return any(marker in stderr for marker in PERMANENT_REMOTE_ERRORS)


@dataclass(frozen=True)
class RemoteRetry:
    """How often and how patiently a remote git call is retried (the API client's backoff)."""

    attempts: int = 3
    backoff_base: float = 0.5
    backoff_max: float = 8.0
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep, compare=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")


class _TransientFailure(Exception):
    def __init__(self, result: ProcessResult) -> None:
        self.result = result
        super().__init__(result.exit_code)


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    reason = redact_text(error.result.stderr.strip())[-200:] if isinstance(error, _TransientFailure) else str(error)
    log.warning("git.retry", attempt=state.attempt_number, reason=reason)


async def git_remote(
    *args: str,
    cwd: Path | str,
    token: str | None = None,
    retry: RemoteRetry | None = None,
    timeout: float = 300.0,
    check: bool = True,
    env: Mapping[str, str] | None = None,
) -> ProcessResult:
    """Run a git command that talks to the remote, retrying network failures and timeouts.

    Authentication failures and refused pushes fail at once; after the last attempt the
    failure is raised as :class:`GitError` (or returned when not ``check``).
    """
    policy = retry or RemoteRetry()
    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.attempts),
        wait=wait_exponential(multiplier=policy.backoff_base, max=policy.backoff_max),
        retry=retry_if_exception_type((_TransientFailure, AgentTimeout)),
        sleep=policy.sleep,
        before_sleep=_log_retry,
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                result = await git(*args, cwd=cwd, token=token, timeout=timeout, check=False, env=env)
                if result.exit_code != 0 and not is_permanent_failure(result):
                    raise _TransientFailure(result)
    except _TransientFailure as exc:
        result = exc.result
    if check and result.exit_code != 0:
        raise GitError(list(args), result.exit_code, result.stderr)
    return result
