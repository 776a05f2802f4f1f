"""The sandbox self-test: a probe inside the agent sandbox tries what a hostile agent would.

:func:`self_test` lays out a scratch state folder like a real host's (an env file and a
key file, a trusted mirror, the run's working copy), starts two local TCP services (one
allowlisted as a model endpoint, one not), then runs :data:`PROBE` in the sandbox exactly
as an agent call would. Each attack must fail and each allowed action succeed; a check
passes when the sandbox behaves so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from agentz_app.config import Settings
from agentz_app.procs import run_process
from workers.netproxy import Destination
from workers.sandbox import Confinement, Sandbox, SandboxUnavailable, python_for_sandbox

# Runs inside the sandbox with ``python -I -S``; prints one JSON object of outcomes.
PROBE = r'''
import json, os, socket, subprocess, sys, urllib.request
args = json.loads(sys.argv[1])
out = {}
def attempt(name, action):
    try:
        action()
        out[name] = "succeeded"
    except Exception as exc:
        out[name] = "failed: " + type(exc).__name__
def read(path):
    with open(path, "rb") as handle:
        handle.read(1)
def write(path):
    with open(path, "a") as handle:
        handle.write("x")
def connect_direct(port):
    socket.create_connection(("127.0.0.1", port), timeout=3).close()
def via_proxy(port):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler())
    opener.open("http://127.0.0.1:%d/" % port, timeout=5).read()
attempt("read_env_file", lambda: read(args["env_file"]))
attempt("read_key_file", lambda: read(args["key_file"]))
attempt("write_outside", lambda: write(args["outside"]))
def write_and_remove(path):
    write(path)
    os.unlink(path)
attempt("write_system", lambda: write_and_remove("/usr/agentz-probe"))
attempt("write_mirror_config", lambda: write(args["mirror_config"]))
attempt("write_mirror_objects", lambda: write_and_remove(os.path.join(args["mirror_objects"], "probe")))
attempt("read_mirror_objects", lambda: os.listdir(args["mirror_objects"]))
attempt("write_workdir", lambda: write(os.path.join(args["workdir"], "probe.txt")))
attempt("connect_direct", lambda: connect_direct(args["blocked_port"]))
attempt("proxy_blocked", lambda: via_proxy(args["blocked_port"]))
attempt("proxy_allowed", lambda: via_proxy(args["allowed_port"]))
def environ_of_others():
    mine = os.getpid()
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != mine:
            try:
                with open("/proc/%s/environ" % pid, "rb") as handle:
                    if args["secret"].encode() in handle.read():
                        return
            except OSError:
                continue
    raise LookupError("secret not found")
attempt("read_other_environ", environ_of_others)
subprocess.Popen(["setsid", "sh", "-c", "sleep 300; : " + args["daemon_tag"]], stdin=subprocess.DEVNULL,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
print(json.dumps(out))
'''

# Outcome each probe action must have for the check to pass, with what it shows.
# Writes are judged on the host afterwards (a write into the sandbox's private /tmp is harmless).
EXPECTED = {
    "read_env_file": ("failed", "the host's .env is not readable"),
    "read_key_file": ("failed", "the App's key file is not readable"),
    "write_system": ("failed", "system folders are read-only"),
    "write_mirror_objects": ("failed", "the mirror's object store is read-only"),
    "read_mirror_objects": ("succeeded", "the mirror's objects are readable (the working copy borrows them)"),
    "write_workdir": ("succeeded", "the working copy is writable"),
    "connect_direct": ("failed", "direct connections leave nowhere"),
    "proxy_blocked": ("failed", "a destination off the allowlist is refused"),
    "proxy_allowed": ("succeeded", "an allowlisted model endpoint is reachable"),
    "read_other_environ": ("failed", "other processes' environments are invisible"),
}


@dataclass(frozen=True)
class Check:
    """One self-test result."""

    name: str
    passed: bool
    detail: str


async def _serve_http() -> tuple[asyncio.AbstractServer, int]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def _daemons_left(tag: str) -> list[int]:
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if tag.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


async def self_test(settings: Settings) -> list[Check]:
    """Run the probe in the configured sandbox; one Check per attack and allowed action."""
    sandbox = Sandbox(settings)
    try:
        sandbox.check()
    except SandboxUnavailable as exc:
        return [Check("sandbox_available", False, str(exc))]
    checks = [Check("sandbox_enabled", sandbox.enabled,
                    "AGENT_SANDBOX=bwrap" if sandbox.enabled else "AGENT_SANDBOX=none: agents are not confined")]
    if settings.agent_network != "allowlist":
        checks.append(Check("network_allowlist", False, "AGENT_NETWORK=open: agents reach any address"))
    allowed_server, allowed_port = await _serve_http()
    blocked_server, blocked_port = await _serve_http()
    secret = f"agentz-probe-secret-{uuid.uuid4().hex}"
    tag = f"agentz-probe-daemon-{uuid.uuid4().hex}"
    with tempfile.TemporaryDirectory(prefix="agentz-selftest-") as scratch:
        root = Path(scratch)
        state = root / "state"
        workdir, home = state / "worktrees" / "probe", state / "agent-homes" / "probe"
        mirror = state / "mirrors" / "octo" / "probe.git"
        for folder in (workdir, home, mirror / "objects"):
            folder.mkdir(parents=True)
        (root / ".env").write_text(f"GITHUB_WEBHOOK_SECRET={secret}\n")
        (root / "app.private-key.pem").write_text("-----BEGIN PRIVATE KEY-----\nprobe\n-----END PRIVATE KEY-----\n")
        (mirror / "config").write_text("[core]\n\tbare = true\n")
        args = {"env_file": str(root / ".env"), "key_file": str(root / "app.private-key.pem"),
                "outside": str(state / "outside.txt"), "mirror_config": str(mirror / "config"),
                "mirror_objects": str(mirror / "objects"), "workdir": str(workdir), "secret": secret,
                "blocked_port": blocked_port, "allowed_port": allowed_port, "daemon_tag": tag}
        python, _ = python_for_sandbox()
        spec = Confinement(workdir, home, (mirror / "objects",), frozenset({Destination("127.0.0.1", allowed_port)}),
                           {"HOME": str(home), "PATH": os.environ.get("PATH", "")})
        # A host process holding a credential in its environment, as the worker does.
        decoy = await asyncio.create_subprocess_exec("sleep", "120", env={"GITHUB_WEBHOOK_SECRET": secret},
                                                     start_new_session=True)
        try:
            async with sandbox.confine([python, "-I", "-S", "-c", PROBE, json.dumps(args)], spec) as confined:
                result = await run_process(confined.args, cwd=workdir, env=confined.env, timeout=60)
        finally:
            allowed_server.close()
            blocked_server.close()
            decoy.kill()
            await decoy.wait()
        await asyncio.sleep(0.3)
        daemons = _daemons_left(tag)
        host = [
            Check("write_outside", not (state / "outside.txt").exists(),
                  "nothing outside the working copy is written on the host"),
            Check("write_mirror_config", (mirror / "config").read_text() == "[core]\n\tbare = true\n",
                  "the trusted mirror's config is unchanged"),
            Check("write_workdir_lands", (workdir / "probe.txt").exists(), "the working copy's writes reach the host"),
        ]
        for pid in daemons:
            with contextlib.suppress(OSError):
                os.killpg(pid, 9)
    try:
        outcomes = json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return [*checks, Check("probe_ran", False, f"the probe did not report: {result.stderr.strip()[-300:]}")]
    for name, (wanted, meaning) in EXPECTED.items():
        got = str(outcomes.get(name, "missing"))
        checks.append(Check(name, got.startswith(wanted), f"{meaning} ({got})"))
    checks += host
    checks.append(Check("no_daemon_survives", not daemons,
                        "no process the agent started outlives its call" if not daemons
                        else f"{len(daemons)} process(es) survived the call"))
    return checks


def checks_json(checks: list[Check]) -> str:
    """The checks as a JSON list."""
    return json.dumps([asdict(check) for check in checks], indent=2)
