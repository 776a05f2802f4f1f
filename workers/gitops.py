"""A thin git layer: every call goes through :func:`workers.procs.run_process`.

Credentials never appear in a URL, an argument or a log line: for remote
operations the installation token is handed to git through a one-line credential
helper that reads it from an environment variable set only for that process.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from agentz_app.config import SECRET_VARIABLES
from agentz_app.errors import AgentZError
from agentz_app.logs import redact_text
from workers.procs import ProcessResult, run_process

TOKEN_VARIABLE = "AGENTZ_GIT_TOKEN"
AUTHOR_NAME = "Agent-Z"
AUTHOR_EMAIL = "agent-z@users.noreply.github.com"
# Reads the token from the environment only when git asks for credentials.
_CREDENTIAL_HELPER = (
    f'!f() {{ test "$1" = get || exit 0; echo username=x-access-token; echo "password=${TOKEN_VARIABLE}"; }}; f'
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
) -> ProcessResult:
    """Run ``git args`` in ``cwd``; raise :class:`GitError` on a non-zero exit when ``check``."""
    argv = ["git", *credential_args(token), *args]
    result = await run_process(argv, cwd=cwd, env=git_env(token), timeout=timeout, stdin=stdin)
    if check and result.exit_code != 0:
        raise GitError(list(args), result.exit_code, result.stderr)
    return result


async def git_out(*args: str, cwd: Path | str, token: str | None = None, timeout: float = 300.0) -> str:
    """Run git and return its stripped standard output."""
    return (await git(*args, cwd=cwd, token=token, timeout=timeout)).stdout.strip()
