"""The doctor's agent CLI checks: each configured CLI is found as the runners find it and answers ``--version``."""

from __future__ import annotations

import os
from collections.abc import Sequence

from agentz_app.agent_credentials import REAL_BACKENDS
from agentz_app.config import Settings, agent_variables_in
from agentz_app.doctor import Check
from agentz_app.errors import AgentTimeout, RunnerError
from agentz_app.procs import run_process, scrubbed_env
from workers.runners.cli import find_binary

INSTALL_HINTS = {
    "claude": "npm install -g @anthropic-ai/claude-code",
    "codex": "npm install -g @openai/codex",
    "opencode": "npm install -g opencode-ai",
}


async def cli_check(settings: Settings, backend: str, *, timeout: float = 30.0) -> Check:
    """``backend``'s CLI is on PATH (or in AGENTZ_CLI_DIR) and ``--version`` exits 0."""
    name = f"agent_cli_{backend}"
    options = {**settings.agent_variables(), **agent_variables_in(os.environ), "PATH": os.environ.get("PATH", "")}
    fix = (f"{INSTALL_HINTS[backend]} (it must be on PATH), or run `bash scripts/install-agent-clis.sh` "
           "and set AGENTZ_CLI_DIR to the folder it prints")
    try:
        binary = find_binary(backend, options)
    except RunnerError as exc:
        return Check(name, False, str(exc), fix)
    try:
        result = await run_process([binary, "--version"], env=scrubbed_env(), timeout=timeout)
    except AgentTimeout:
        return Check(name, False, f"`{binary} --version` did not answer within {timeout:.0f}s", fix)
    except OSError as exc:
        return Check(name, False, f"cannot run {binary}: {exc.strerror}", fix)
    output = (result.stdout.strip() or result.stderr.strip()).splitlines()
    first = output[0][:120] if output else ""
    if result.exit_code != 0:
        return Check(name, False, f"`{binary} --version` exited with {result.exit_code}: {first}", fix)
    return Check(name, True, f"{binary}: {first}")


async def cli_checks(settings: Settings, backends: Sequence[str]) -> list[Check]:
    """One check per real backend in ``backends``."""
    return [await cli_check(settings, backend) for backend in backends if backend in REAL_BACKENDS]
