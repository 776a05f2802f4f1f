"""The OS sandbox every agent call runs in (bubblewrap), and its network broker.

An agent is untrusted code: its prompt holds text anyone can write. Inside the
sandbox it may do anything, because nothing it can reach is worth stealing:

- writable: the run's own working copy, the agent's private HOME, a private /tmp;
- read-only: system directories (/usr, selected /etc files), the CLI install folder,
  the Python that runs scripted agents, and paths the caller names (the mirror's
  object store the working copy borrows objects from); **nothing else**: no
  STATE_DIR, no ``.env``, no key file, no other run, no mirror refs or config;
- new PID, IPC, UTS, cgroup and user namespaces, no capabilities, no nested user
  namespaces, its own session; ``--die-with-parent`` plus the PID namespace mean
  that when the call ends, times out or is cancelled, every process it started is gone;
- network (``AGENT_NETWORK``): ``allowlist`` unshares the network namespace and
  gives the agent one way out, ``HTTP(S)_PROXY`` to a bridge that relays to
  :class:`~workers.netproxy.AllowlistProxy` in the worker, which only dials the
  model endpoints and ``AGENT_NETWORK_ALLOW``; ``open`` keeps the host network.

``AGENT_SANDBOX=none`` runs agents directly on the host (a warning everywhere).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agentz_app.config import Settings
from agentz_app.errors import ConfigError
from agentz_app.logs import get_logger
from workers.netproxy import AllowlistProxy, Destination

PROXY_PORT = 3128
SOCKET_INSIDE = "/run/agentz/proxy.sock"
HOSTNAME = "agentz-sandbox"
_ETC_ENTRIES = ("alternatives", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "ssl", "ca-certificates",
                "resolv.conf", "hosts", "nsswitch.conf", "passwd", "group", "localtime", "mime.types")
_TOP_LEVEL_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
_SYSTEM_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
_INIT_SOURCE = Path(__file__).with_name("sandbox_init.py")

log = get_logger("agentz.sandbox")


class SandboxUnavailable(ConfigError):
    """The configured sandbox cannot run on this host."""

    def __init__(self, reason: str) -> None:
        super().__init__("AGENT_SANDBOX", f"{reason}. Install bubblewrap (apt-get install bubblewrap) "
                                          "or set AGENT_SANDBOX=none to run agents unsandboxed")


@functools.lru_cache(maxsize=4)
def find_bwrap(path: str | None = None) -> str:
    """The bubblewrap binary, or SandboxUnavailable."""
    found = shutil.which("bwrap", path=path)
    if found is None:
        raise SandboxUnavailable("bubblewrap (bwrap) is not installed")
    return found


def bwrap_works() -> bool:
    """True when bubblewrap is installed and can create its namespaces on this host."""
    try:
        bwrap = find_bwrap()
    except SandboxUnavailable:
        return False
    probe = subprocess.run([bwrap, "--unshare-all", "--unshare-user", "--disable-userns", "--ro-bind", "/", "/",
                            "true"], capture_output=True, check=False, timeout=30)
    return probe.returncode == 0


def python_for_sandbox() -> tuple[str, Path]:
    """The real interpreter running this worker and the installation prefix to expose read-only."""
    executable = os.path.realpath(sys.executable)
    return executable, Path(sys.base_prefix).resolve()


@dataclass(frozen=True)
class Confinement:
    """One agent call's sandbox: what it may write, read and reach."""

    workdir: Path
    home: Path
    read_only: tuple[Path, ...] = ()
    allow: frozenset[Destination] = frozenset()
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Confined:
    """A command ready to run in its sandbox, and what its network broker refused."""

    args: list[str]
    env: dict[str, str]
    proxy: AllowlistProxy | None = None

    @property
    def blocked(self) -> dict[str, int]:
        return dict(self.proxy.blocked) if self.proxy is not None else {}


def _bind_system(args: list[str]) -> None:
    args += ["--ro-bind", "/usr", "/usr"]
    for name in _TOP_LEVEL_LINKS:
        top = Path("/") / name
        if top.is_symlink():
            args += ["--symlink", os.readlink(top), str(top)]
        elif top.is_dir():
            args += ["--ro-bind", str(top), str(top)]
    for name in _ETC_ENTRIES:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]


def _covered(path: Path, by: Iterable[Path]) -> bool:
    return any(path == parent or parent in path.parents for parent in by)


def bwrap_args(
    bwrap: str, spec: Confinement, *, network: str, command: Sequence[str], sockets: Sequence[tuple[Path, str]] = ()
) -> list[str]:
    """The full bubblewrap command line for ``command`` confined by ``spec``.

    ``sockets`` are (host path, path inside) pairs bound read-only (the proxy socket).
    """
    args = [bwrap, "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--unshare-user", "--disable-userns", "--cap-drop", "ALL",
            "--hostname", HOSTNAME]
    if network == "allowlist":
        args.append("--unshare-net")
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--ro-bind", "/proc/sys", "/proc/sys"]
    _bind_system(args)
    system = (Path("/usr"),)
    for path in spec.read_only:
        if path.exists() and not _covered(path, system):
            args += ["--ro-bind", str(path), str(path)]
    args += ["--bind", str(spec.home), str(spec.home), "--bind", str(spec.workdir), str(spec.workdir)]
    for outside, inside in sockets:
        args += ["--ro-bind", str(outside), inside]
    args += ["--remount-ro", "/", "--chdir", str(spec.workdir), "--clearenv"]
    for key, value in sorted(spec.env.items()):
        args += ["--setenv", key, value]
    return [*args, "--", *command]


def sandbox_path(read_only: Iterable[Path], extra: Iterable[str] = ()) -> str:
    """PATH inside the sandbox: named tool folders first, then the system's."""
    dirs = [*extra]
    for root in read_only:
        for candidate in (root / "node_modules" / ".bin", root / "bin"):
            if candidate.is_dir():
                dirs.append(str(candidate))
    return ":".join(dict.fromkeys([*dirs, *_SYSTEM_PATH]))


def inside_env(spec: Confinement, *, network: str) -> dict[str, str]:
    """The agent's environment inside the sandbox: the caller's, with a private /tmp and the proxy."""
    env = {key: value for key, value in spec.env.items() if not key.lower().endswith("_proxy")}
    env["TMPDIR"] = "/tmp"
    env["PATH"] = sandbox_path(spec.read_only, [p for p in env.get("PATH", "").split(":") if p and _visible(p, spec)])
    env.setdefault("LANG", "C.UTF-8")
    if network == "allowlist":
        proxy = f"http://127.0.0.1:{PROXY_PORT}"
        for key in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            env[key] = proxy
        env["NO_PROXY"] = env["no_proxy"] = ""
    return env


def _visible(path: str, spec: Confinement) -> bool:
    candidate = Path(path)
    return _covered(candidate, (Path("/usr"), *spec.read_only, spec.home, spec.workdir))


class Sandbox:
    """Builds and brokers the sandbox of each agent call according to the settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.mode = settings.agent_sandbox
        self.network = settings.agent_network
        self.extra_allow = frozenset(Destination.parse(item) for item in settings.agent_network_allow)
        self.extra_read_only = tuple(Path(p).resolve() for p in settings.agent_sandbox_paths)

    @property
    def enabled(self) -> bool:
        return self.mode == "bwrap"

    def check(self) -> None:
        """Raise SandboxUnavailable when the configured sandbox cannot be used here."""
        if self.enabled:
            find_bwrap()

    @contextlib.asynccontextmanager
    async def confine(self, command: Sequence[str], spec: Confinement) -> AsyncIterator[Confined]:
        """Yield ``command`` wrapped in its sandbox; the network broker lives as long as the block."""
        if not self.enabled:
            yield Confined(list(command), dict(spec.env))
            return
        python, prefix = python_for_sandbox()
        spec = dataclasses.replace(spec, read_only=(*spec.read_only, prefix, *self.extra_read_only),
                                   allow=spec.allow | self.extra_allow)
        spec = dataclasses.replace(spec, env=inside_env(spec, network=self.network))
        outer_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        if self.network != "allowlist":
            yield Confined(bwrap_args(find_bwrap(), spec, network=self.network, command=command),
                           outer_env)
            return
        folder = Path(tempfile.mkdtemp(prefix="agentz-net-"))
        proxy = AllowlistProxy(spec.allow)
        try:
            await proxy.start(folder / "proxy.sock")
            init = [python, "-I", "-S", "-c", _INIT_SOURCE.read_text(), str(PROXY_PORT), SOCKET_INSIDE, "--",
                    *command]
            args = bwrap_args(find_bwrap(), spec, network=self.network, command=init,
                              sockets=[(folder / "proxy.sock", SOCKET_INSIDE)])
            yield Confined(args, outer_env, proxy)
        finally:
            await proxy.close()
            if proxy.blocked:
                log.info("sandbox refused network destinations", blocked=dict(proxy.blocked))
            shutil.rmtree(folder, ignore_errors=True)

