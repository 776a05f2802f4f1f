"""A thin git layer for trusted code: every call goes through :func:`workers.procs.run_process`.

Credentials never appear in a URL, an argument or a log line: for remote
operations the installation token is handed to git through a one-line credential
helper that reads it from an environment variable set only for that process.

Every call ignores the host's system and global git configuration and runs no
hook and no fsmonitor (:data:`HARDENING`), whatever a repository's own config says:
trusted git must never execute something an agent could have planted.
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
