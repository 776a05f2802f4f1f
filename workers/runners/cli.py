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
- ``AGENTZ_MODEL``: model name passed to the CLI; ``AGENTZ_CLAUDE_MODEL``, ``AGENTZ_CODEX_MODEL``,
  ``AGENTZ_OPENCODE_MODEL`` override it for one backend.

Those, and the provider's credentials, are read from ``.env`` too (``Settings.agent_variables``);
the agent process gets only its own provider's (``environment.provider_env``). With
``AGENT_CLAUDE_LOGIN_DIR`` / ``AGENT_CODEX_LOGIN_DIR`` the credential files of the private
``CLAUDE_CONFIG_DIR`` / ``CODEX_HOME`` link to that login folder, mounted read-only.
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from agentz_app.agent_credentials import LOGIN_FOLDERS, backend_variables, login_dir
from agentz_app.config import Settings, agent_variables_in
from agentz_app.domain.runner import LogSink, RunnerResult
from agentz_app.errors import RunnerError
from agentz_app.procs import ProcessResult, run_process
from workers.netproxy import Destination
from workers.runners.environment import agent_env
from workers.sandbox import Confinement, Sandbox

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
    backend: str = ""

    def option(self, name: str, default: str = "") -> str:
        return self.options.get(name, default)

    @property
    def model(self) -> str | None:
        specific = self.options.get(f"AGENTZ_{self.backend.upper()}_MODEL") if self.backend else None
        return specific or self.options.get("AGENTZ_MODEL") or (DEFAULT_LOCAL_MODEL if self.endpoint else None)


@dataclass(frozen=True)
class Command:
    args: list[str]
    stdin: str | None
    env: dict[str, str]
    read_only: tuple[Path, ...] = ()


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


def install_dirs(binary: str, options: Mapping[str, str]) -> list[Path]:
    """Folders the CLI needs to read inside the sandbox: its install folder and, when outside /usr, node's."""
    dirs = []
    if options.get("AGENTZ_CLI_DIR"):
        dirs.append(Path(options["AGENTZ_CLI_DIR"]).resolve())
    else:
        real = Path(os.path.realpath(binary))
        parts = real.parts
        root = Path(*parts[: parts.index("node_modules")]) if "node_modules" in parts else real.parent
        dirs.append(root)
    node = shutil.which("node", path=options.get("PATH"))
    if node is not None:
        dirs.append(Path(os.path.realpath(node)).parent.parent)
    return dirs


def endpoint_destinations(options: Mapping[str, str], defaults: Sequence[str]) -> frozenset[Destination]:
    """Where the CLI's model traffic may go: the configured base URLs, else the vendor's defaults."""
    urls = [options[key] for key in ("AGENTZ_MODEL_BASE_URL", "ANTHROPIC_BASE_URL", "OPENAI_BASE_URL")
            if options.get(key, "").startswith(("http://", "https://"))]
    return frozenset(Destination.parse(url) for url in (urls or defaults))


class CliRunner(abc.ABC):
    """A runner driving one coding-agent CLI as a subprocess, inside the agent sandbox."""

    name: str
    binary: str
    default_endpoints: Sequence[str] = ()

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sandbox = Sandbox(settings)

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
        read_only: Sequence[Path] = (),
    ) -> RunnerResult:
        """Run the CLI non-interactively in ``workdir``; raise AgentTimeout after killing it on timeout."""
        started = time.monotonic()
        # Options: every agent variable (.env and environment) and the caller's env; the child gets
        # only this backend's provider variables (agent_env) and the variables the adapter sets.
        options = {**self.settings.agent_variables(), **agent_variables_in(os.environ), **(env or {})}
        options.setdefault("PATH", os.environ.get("PATH", ""))
        binary = find_binary(self.binary, options)
        call = Invocation(role, prompt, await asyncio.to_thread(workdir.resolve), session_id,
                          agent_home(self.settings.state_dir, self.name, workdir), options, endpoint_from(options),
                          self.name)
        command = self.with_login(self.command(binary, call), call)
        child_env = agent_env(self.settings, {**(env or {}), **command.env}, backend=self.name)
        spec = Confinement(call.workdir, call.home, (*install_dirs(binary, options), *read_only, *command.read_only),
                           endpoint_destinations(backend_variables(self.name, options), self.default_endpoints),
                           child_env)
        async with self.sandbox.confine(command.args, spec) as confined:
            process = await run_process(confined.args, cwd=call.workdir, env=confined.env, timeout=timeout,
                                        stdin=command.stdin, on_line=log)
        result = self.parse(process, call)
        return replace(result, duration=time.monotonic() - started, network_blocked=confined.blocked)

    def with_login(self, command: Command, call: Invocation) -> Command:
        """``command`` reusing this host's CLI login when configured: the credential files of the
        agent's private config folder link into the login folder, which is mounted read-only."""
        login = LOGIN_FOLDERS.get(self.name)
        folder = login_dir(self.settings, self.name)
        if login is None or folder is None:
            return command
        private = Path(command.env.get(login.cli_variable) or call.home / f".{self.name}")
        link_login_files(folder, private, login.files, home=call.home)
        return replace(command, read_only=(*command.read_only, folder.resolve()))


def private_folder(home: Path, private: Path) -> Path:
    """``private`` inside the agent's ``home``, created, with no symlink on the way (the agent may plant one)."""
    home = home.resolve()
    if not private.is_absolute() or home not in (private, *private.parents):
        raise RunnerError(f"the agent's config folder {private} is outside its home")
    current = home
    for part in private.relative_to(home).parts:
        current = current / part
        if current.is_symlink():
            raise RunnerError(f"{current} in the agent's home is a symlink; not following it")
        current.mkdir(mode=0o700, exist_ok=True)
    return current


def write_private_file(home: Path, path: Path, text: str) -> None:
    """Write a config file into the agent's home without following anything the agent planted there.

    The folder is checked by :func:`private_folder`; the file is written beside it and renamed
    over the name, which replaces a symlink instead of writing through it.
    """
    folder = private_folder(home, path.parent)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".agentz-")
    with os.fdopen(handle, "w") as stream:
        stream.write(text)
    os.replace(temporary, folder / path.name)


def link_login_files(login: Path, private: Path, files: Sequence[str], *, home: Path) -> None:
    """Make each of ``files`` in ``private`` (inside the agent's ``home``) a symlink to ``login``'s.

    The agent may have replaced anything in its home between calls: no folder on the way from
    ``home`` to ``private`` may be a symlink, and whatever sits at a link's place is removed
    without being followed.
    """
    private = private_folder(home, private)
    for name in files:
        link = private / name
        if link.is_symlink() or link.is_file():
            link.unlink()
        elif link.exists():
            shutil.rmtree(link)
        link.symlink_to(login.resolve() / name)


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
