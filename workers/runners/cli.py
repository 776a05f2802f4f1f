"""What the Claude, Codex and OpenCode runners share: binaries, private homes, model endpoint.

Each CLI runs with a private HOME (and CODEX_HOME / XDG dirs) under
``<state_dir>/agent-homes/<backend>/<workdir hash>``, never the user's own
configuration; the same workdir gets the same home, so a session can be resumed
by a later call, even from another worker process on the host.

Settings read from the ``env`` passed to ``run`` or, failing that, the process
environment:

- ``AGENTZ_CLI_DIR``: npm prefix holding the CLIs (``node_modules/.bin/<cli>``);
  without it the binary is looked up on PATH (see ``scripts/install-agent-clis.sh``).
- ``AGENTZ_MODEL_BASE_URL``: talk to this model server instead of the vendor's
  (root URL, the APIs live under ``/v1``; the fake model in tests and the demo),
  with ``AGENTZ_MODEL_API_KEY`` (default ``agentz-local``). The runner then also
  sends the agent's role in the ``X-Agentz-Role`` header and turns retries off.
- ``AGENTZ_MODEL``: model name passed to the CLI.
"""

from __future__ import annotations

import abc
import hashlib
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from agentz_app.config import Settings
from agentz_app.errors import RunnerError
from workers.procs import ProcessResult, run_process
from workers.runners.base import LogSink, RunnerResult
from workers.runners.registry import agent_env, provider_env

ROLE_HEADER = "X-Agentz-Role"
DEFAULT_LOCAL_MODEL = "agentz-local-model"


@dataclass(frozen=True)
class ModelEndpoint:
    """A custom (usually local) model server the CLI talks to."""

    base_url: str
    api_key: str

    @property
    def v1(self) -> str:
        return self.base_url.rstrip("/") + "/v1"


@dataclass(frozen=True)
class Invocation:
    """Everything a CLI adapter needs to build its command line and configuration."""

    role: str
    prompt: str
    workdir: Path
    session_id: str | None
    home: Path
    options: Mapping[str, str]
    endpoint: ModelEndpoint | None

    def option(self, name: str, default: str = "") -> str:
        return self.options.get(name, default)

    @property
    def model(self) -> str | None:
        return self.options.get("AGENTZ_MODEL") or (DEFAULT_LOCAL_MODEL if self.endpoint else None)


@dataclass(frozen=True)
class Command:
    args: list[str]
    stdin: str | None
    env: dict[str, str]


def endpoint_from(options: Mapping[str, str]) -> ModelEndpoint | None:
    """The custom model endpoint configured in ``options``, if any."""
    url = options.get("AGENTZ_MODEL_BASE_URL", "").strip()
    if not url:
        return None
    if not url.startswith(("http://", "https://")):
        raise RunnerError(f"AGENTZ_MODEL_BASE_URL must be an http(s) URL, got {url!r}")
    return ModelEndpoint(url.rstrip("/"), options.get("AGENTZ_MODEL_API_KEY") or "agentz-local")


def find_binary(name: str, options: Mapping[str, str]) -> str:
    """The path of CLI ``name``: under ``$AGENTZ_CLI_DIR/node_modules/.bin`` or on PATH."""
    cli_dir = options.get("AGENTZ_CLI_DIR")
    if cli_dir:
        candidate = Path(cli_dir) / "node_modules" / ".bin" / name
        if os.access(candidate, os.X_OK):
            return str(candidate)
        raise RunnerError(f"{name} not found in AGENTZ_CLI_DIR={cli_dir} (run scripts/install-agent-clis.sh)")
    found = shutil.which(name, path=options.get("PATH"))
    if found is None:
        raise RunnerError(f"{name} not found on PATH; install it or set AGENTZ_CLI_DIR")
    return found


def agent_home(state_dir: Path, backend: str, workdir: Path) -> Path:
    """The private home directory of ``backend`` agents working in ``workdir``."""
    key = hashlib.sha256(str(workdir.resolve()).encode()).hexdigest()[:20]
    home = state_dir.resolve() / "agent-homes" / backend / key
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    return home


def stderr_tail(stderr: str, limit: int = 500) -> str:
    """The last non-empty stderr line(s), shortened, for error messages."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return " | ".join(lines[-3:])[-limit:] if lines else ""


class CliRunner(abc.ABC):
    """A runner driving one coding-agent CLI as a subprocess."""

    name: str
    binary: str

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @abc.abstractmethod
    def command(self, binary: str, call: Invocation) -> Command:
        """The command line, stdin and extra environment for ``call`` (may write config files)."""

    @abc.abstractmethod
    def parse(self, process: ProcessResult, call: Invocation) -> RunnerResult:
        """Turn the finished process's output into a result."""

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
    ) -> RunnerResult:
        """Run the CLI non-interactively in ``workdir``; raise AgentTimeout after killing it on timeout."""
        started = time.monotonic()
        options = {**provider_env(), **{k: v for k, v in os.environ.items() if k.startswith("AGENTZ_")},
                   **(env or {})}
        options.setdefault("PATH", os.environ.get("PATH", ""))
        binary = find_binary(self.binary, options)
        call = Invocation(role, prompt, workdir.resolve(), session_id,
                          agent_home(self.settings.state_dir, self.name, workdir), options, endpoint_from(options))
        command = self.command(binary, call)
        child_env = agent_env(self.settings, {**(env or {}), **command.env})
        process = await run_process(command.args, cwd=call.workdir, env=child_env, timeout=timeout,
                                    stdin=command.stdin, on_line=log)
        result = self.parse(process, call)
        return _with_duration(result, time.monotonic() - started)


def _with_duration(result: RunnerResult, duration: float) -> RunnerResult:
    return replace(result, duration=duration)


def common_home_env(home: Path) -> dict[str, str]:
    """HOME and XDG directories inside the private home."""
    return {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
    }


def split_words(value: str) -> Sequence[str]:
    """Split a comma- or space-separated option value."""
    return [part for part in value.replace(",", " ").split() if part]
