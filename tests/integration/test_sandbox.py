"""The agent sandbox on this host: isolation, process lifetime and the network allowlist, attacked for real."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from agentz_app.cli import cli
from agentz_app.config import Settings
from agentz_app.errors import AgentTimeout
from agentz_app.fakemodel.scenario import Scenario
from agentz_app.fakemodel.server import FakeModelServer
from tests.conftest import needs_sandbox
from tests.waiting import wait_for
from workers.netproxy import AllowlistProxy, Destination
from workers.runners.scripted import ScriptedRunner
from workers.sandbox_check import self_test

pytestmark = needs_sandbox


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"state_dir": tmp_path / "state", "database_url": f"sqlite:///{tmp_path / 'db.sqlite'}",
                              "default_backend": "scripted", "agent_sandbox": "bwrap", **overrides}
    return Settings.load(None, **values)


async def _play(settings: Settings, workdir: Path, steps: list[dict[str, Any]], *, timeout: float = 60,
                env: dict[str, str] | None = None) -> Any:
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    return await ScriptedRunner(settings).run(
        "developer", "go", workdir, timeout=timeout, env={"AGENTZ_SCRIPTED_STEPS": json.dumps(steps), **(env or {})})


def _processes_with(tag: str) -> list[int]:
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if tag.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


async def test_self_test_passes_every_check_on_this_host(tmp_path: Path) -> None:
    checks = await self_test(_settings(tmp_path))
    assert [c.name for c in checks if not c.passed] == []
    assert {"read_env_file", "read_key_file", "write_mirror_config", "proxy_blocked", "proxy_allowed",
            "read_other_environ", "no_daemon_survives"} <= {c.name for c in checks}


def test_doctor_fails_without_the_sandbox_and_names_the_checks(tmp_path: Path) -> None:
    env = {"STATE_DIR": str(tmp_path / "s"), "DATABASE_URL": f"sqlite:///{tmp_path / 'd.db'}", "AGENT_SANDBOX": "none"}
    result = CliRunner().invoke(cli, ["--env-file", os.devnull, "doctor", "--sandbox", "--json"], env=env)
    assert result.exit_code == 1
    failed = {check["name"] for check in json.loads(result.output) if not check["passed"]}
    assert {"sandbox_enabled", "read_env_file", "read_key_file", "no_daemon_survives"} <= failed

    ok = CliRunner().invoke(cli, ["--env-file", os.devnull, "doctor", "--sandbox"],
                            env={**env, "AGENT_SANDBOX": "bwrap"})
    assert ok.exit_code == 0, ok.output
    assert "FAIL" not in ok.output


async def test_a_double_forked_daemon_dies_with_the_call_even_on_timeout(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    tag = "agentz-test-daemon-on-timeout"
    steps = [{"role": "developer", "run": [f"setsid sh -c 'sleep 300; : {tag}' >/dev/null 2>&1 < /dev/null &"],
              "hang": True}]
    with pytest.raises(AgentTimeout):
        await _play(settings, tmp_path / "work", steps, timeout=3)
    await wait_for(lambda: _processes_with(tag) == [], timeout=10, what=f"no process mentioning {tag}")


async def test_the_fake_model_is_reachable_but_another_local_port_is_not(tmp_path: Path) -> None:
    model = FakeModelServer(Scenario())
    url = await model.start()
    other = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    other_port = other.sockets[0].getsockname()[1]
    fetch = ("python3 -c \"import urllib.request as u, urllib.error as e, sys\n"
             "try: print(u.urlopen(sys.argv[1], timeout=5).status)\n"
             "except e.HTTPError as x: print(x.code, x.read().decode()[:70])\" ")
    try:
        steps = [{"role": "developer", "run": [fetch + f"{url}/v1/models > model.txt",
                                               fetch + f"http://127.0.0.1:{other_port}/ > other.txt"]}]
        result = await _play(_settings(tmp_path), tmp_path / "work", steps, env={"AGENTZ_MODEL_BASE_URL": url})
    finally:
        other.close()
        await model.stop()
    assert result.ok, result.error
    assert result.network_blocked == {f"127.0.0.1:{other_port}": 1}
    # The model server answered itself (whatever its status); the other port got the proxy's refusal.
    assert "sandbox network policy" not in (tmp_path / "work" / "model.txt").read_text()
    assert (tmp_path / "work" / "other.txt").read_text().startswith("403 403 Forbidden: blocked by the Agent-Z")


async def test_the_agent_gets_no_credential_and_cannot_read_the_hosts_files(tmp_path: Path) -> None:
    secret_file = tmp_path / "app.private-key.pem"
    secret_file.write_text("-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n")
    settings = _settings(tmp_path, github_webhook_secret="hook-secret-value", github_private_key_path=secret_file)
    os.environ["GITHUB_WEBHOOK_SECRET_PROBE"] = "hook-secret-value"
    try:
        steps = [{"role": "developer", "run": [
            f"cat {secret_file} > stolen.txt 2>&1; env > env.txt; ls -a / > root.txt; "
            f"cat /proc/1/environ | tr '\\0' '\\n' > pid1.txt; true"]}]
        result = await _play(settings, tmp_path / "work", steps)
    finally:
        del os.environ["GITHUB_WEBHOOK_SECRET_PROBE"]
    assert result.ok, result.error
    work = tmp_path / "work"
    assert "No such file" in (work / "stolen.txt").read_text()
    for name in ("env.txt", "pid1.txt"):
        text = (work / name).read_text()
        assert "hook-secret-value" not in text
        assert "DATABASE_URL" not in text
    assert "state" not in (work / "root.txt").read_text().split()


async def test_proxy_counts_refused_destinations_and_relays_allowed_ones(tmp_path: Path) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.read(100))
        await writer.drain()
        writer.close()

    upstream = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = upstream.sockets[0].getsockname()[1]
    proxy = AllowlistProxy([Destination("127.0.0.1", port)])
    sock = tmp_path / "p.sock"
    await proxy.start(sock)
    try:
        reader, writer = await asyncio.open_unix_connection(str(sock))
        writer.write(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        writer.write(b"ping")
        assert await reader.read(100) == b"ping"
        writer.close()
        for target in (f"CONNECT 127.0.0.1:{port + 1} HTTP/1.1", "CONNECT evil.example:443 HTTP/1.1",
                       "GET http://evil.example/x HTTP/1.1"):
            reader, writer = await asyncio.open_unix_connection(str(sock))
            writer.write(f"{target}\r\nHost: x\r\n\r\n".encode())
            assert (await reader.readline()).startswith(b"HTTP/1.1 403")
            writer.close()
        reader, writer = await asyncio.open_unix_connection(str(sock))
        writer.write(b"garbage\r\n\r\n")
        assert (await reader.readline()).startswith(b"HTTP/1.1 400")
    finally:
        await proxy.close()
        upstream.close()
    assert proxy.blocked == {f"127.0.0.1:{port + 1}": 1, "evil.example:443": 1, "evil.example:80": 1}


def test_destinations_parse_hosts_ports_and_urls() -> None:
    assert Destination.parse("registry.npmjs.org") == Destination("registry.npmjs.org", 443)
    assert Destination.parse("http://127.0.0.1:8080/v1") == Destination("127.0.0.1", 8080)
    assert Destination.parse("https://API.example.com") == Destination("api.example.com", 443)
    assert Destination.parse("[::1]:9") == Destination("::1", 9)
    for bad in ("", ":80", "host:notaport"):
        with pytest.raises(ValueError, match=r"no host|bad port"):
            Destination.parse(bad)
