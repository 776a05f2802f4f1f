"""`agentz demo` stopped with SIGTERM or SIGINT leaves no process, no open port and no workspace behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.waiting import wait_for_sync

pytestmark = pytest.mark.slow


def _pids_mentioning(text: str) -> set[int]:
    found = set()
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if text.encode() in (entry / "cmdline").read_bytes():
                found.add(int(entry.name))
        except OSError:
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_every_child_closes_the_ports_and_removes_the_workspace(
    tmp_path: Path, signum: signal.Signals
) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("GITHUB_", "DATABASE_"))}
    env["TMPDIR"] = str(tmp_path)
    demo = subprocess.Popen([sys.executable, "-m", "agentz_app", "demo", "--timeout", "120"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    assert demo.stdout is not None
    lines: list[str] = []
    try:
        # Wait until every role runs and the issues exist: the demo is in full flight.
        while not any("issues" in line and "created" in line for line in lines):
            line = demo.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        workspace = next(tmp_path.glob("agentz-demo-*"))
        settings = dict(line.split("=", 1) for line in (workspace / "demo.env").read_text().splitlines())
        receiver_port = int(settings["RECEIVER_PORT"])
        hub_port = int(settings["GITHUB_API_URL"].rsplit(":", 1)[1].split("/")[0])
        children = _pids_mentioning(str(workspace)) - {demo.pid}
        assert len(children) >= 5, children  # receiver, scheduler, planner, workers, reconciler
        assert _port_open(receiver_port)
        assert _port_open(hub_port)

        demo.send_signal(signum)
        rest, _ = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    output = "".join(lines) + rest
    assert demo.returncode == 128 + signum, output[-3000:]
    assert f"received {signum.name}" in output
    # orphans are reaped by init, not by the demo
    wait_for_sync(lambda: not any(_alive(pid) for pid in children), timeout=10, what="every demo child gone")
    assert not _port_open(receiver_port)
    assert not _port_open(hub_port)
    assert not workspace.exists()
