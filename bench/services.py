"""Real processes for benchmarks: start Agent-Z roles and helper servers, wait for them, stop them.

Every process gets a hermetic environment (the caller's, minus Agent-Z settings, plus
the ones given), runs in a scratch folder (so no stray ``.env`` is read), writes its
output to a log file there and is stopped with SIGTERM, then SIGKILL on its own
process group if it does not exit in time.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

REPO_ROOT = Path(__file__).resolve().parent.parent
_START_TIMEOUT = 60.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def hermetic_env(settings: Mapping[str, str]) -> dict[str, str]:
    """The current environment without Agent-Z settings, plus ``settings`` and this checkout on PYTHONPATH."""
    from agentz_app.config import Settings

    dropped = {name.upper() for name in Settings.model_fields} | {"AGENTZ_SCRIPTED_STEPS"}
    env = {key: value for key, value in os.environ.items() if key.upper() not in dropped}
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = f"{REPO_ROOT}{os.pathsep}{path}" if path else str(REPO_ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(settings)
    return env


def read_rss_kb(pid: int, field_name: str = "VmRSS") -> int | None:
    """A memory figure of a live process from ``/proc/<pid>/status`` in kB (None if unavailable)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclass
class Service:
    """One started process and its log file."""

    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        """True while the process has not exited."""
        return self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the process's output, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def terminate(self) -> None:
        """Ask the process to stop (SIGTERM) without waiting."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, wait, then SIGKILL the process group this service started."""
        if self.alive():
            self.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        # The process leads its own session: its leftover children go with the group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None


def stop_all(services: Sequence[Service]) -> None:
    """Stop several services at once: SIGTERM to all, then wait for (or kill) each."""
    for service in services:
        service.terminate()
    for service in services:
        service.stop()


def start(name: str, args: Sequence[str], *, env: Mapping[str, str], workdir: Path) -> Service:
    """Start ``python <args>`` in ``workdir`` with ``env``; output goes to ``workdir/<name>.log``."""
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{name}.log"
    log = open(log_path, "ab")  # noqa: SIM115 - closed by Service.stop
    try:
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=workdir,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    except BaseException:
        log.close()
        raise
    return Service(name, proc, log_path, log)


def wait_http(url: str, service: Service, *, timeout: float = _START_TIMEOUT) -> None:
    """Poll ``url`` until it answers 200; raise with the service's log if it dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not service.alive():
            raise RuntimeError(f"{service.name} exited with {service.proc.returncode}:\n{service.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{service.name} did not answer {url} within {timeout:.0f}s:\n{service.log_tail()}")


def launch_receiver(env: Mapping[str, str], workdir: Path, *, name: str = "receiver") -> tuple[Service, str]:
    """Start ``agentz receiver`` on a free loopback port without waiting; return it and its base URL."""
    port = free_port()
    service = start(name, ["-m", "agentz_app", "receiver", "--host", "127.0.0.1", "--port", str(port)],
                    env=env, workdir=workdir)
    return service, f"http://127.0.0.1:{port}"


def start_receiver(env: Mapping[str, str], workdir: Path, *, name: str = "receiver") -> tuple[Service, str]:
    """Start ``agentz receiver`` on a free loopback port; return it and its base URL once ready."""
    service, base = launch_receiver(env, workdir, name=name)
    try:
        wait_http(f"{base}/readyz", service)
    except BaseException:
        service.stop()
        raise
    return service, base


class RssSampler:
    """Sample a process's VmRSS on a thread; :attr:`peak_kb` is the largest value seen."""

    def __init__(self, pid: int, *, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)

    def _sample(self) -> None:
        while True:
            value = read_rss_kb(self.pid)
            if value is not None:
                self.peak_kb = max(self.peak_kb, value)
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(5)

    @property
    def peak_mb(self) -> float:
        return round(self.peak_kb / 1024, 1)


def run_json(args: Sequence[str], *, env: Mapping[str, str], workdir: Path, timeout: float) -> Any:
    """Run ``python <args>`` to completion and parse the JSON it prints last on stdout."""
    done = subprocess.run(
        [sys.executable, *args], cwd=workdir, env=dict(env), stdin=subprocess.DEVNULL,
        capture_output=True, timeout=timeout, check=False, start_new_session=True,
    )
    if done.returncode != 0:
        tail = "\n".join(done.stderr.decode(errors="replace").splitlines()[-15:])
        raise RuntimeError(f"{' '.join(args)} exited with {done.returncode}:\n{tail}")
    lines = done.stdout.decode().strip().splitlines()
    if not lines:
        raise RuntimeError(f"{' '.join(args)} printed nothing")
    return json.loads(lines[-1])
