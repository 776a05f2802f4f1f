"""Agent subprocesses never receive Agent-Z's secrets, whichever backend runs them.

Each CLI backend (Claude Code, Codex, OpenCode) is run through its real runner,
with a stand-in executable in ``AGENTZ_CLI_DIR`` that records its environment,
arguments and stdin. Every secret is set in this process's environment and in the
settings; none may reach the agent, its command line or its private home.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from agentz_app.config import SECRET_VARIABLES, Settings
from agentz_app.errors import RunnerError
from agentz_app.procs import scrubbed_env
from workers.runners.registry import agent_env, get_runner

PEM = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
WEBHOOK_SECRET = "whsec-0d1e2f3a4b5c6d7e8f9a"
DATABASE_URL = "postgresql://agentz:db-Pa55-w0rd@127.0.0.1:5432/agentz"
TOKEN = "ghs_" + "Q1w2E3r4T5y6U7i8O9p0A1s2D3f4G5h6J7k8"

RECORDER = """#!/bin/sh
env > "$PWD/agent-env.txt"
printf '%s\\n' "$0" "$@" > "$PWD/agent-argv.txt"
cat > "$PWD/agent-stdin.txt"
echo '{"type": "result", "result": "done"}'
"""


def _pem_lines() -> list[str]:
    return [line for line in PEM.splitlines() if line and not line.startswith("-----")]


@pytest.fixture
def secret_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    key_path = tmp_path / "app.private-key.pem"
    key_path.write_text(PEM)
    values = {
        "GITHUB_PRIVATE_KEY": PEM,
        "GITHUB_PRIVATE_KEY_PATH": str(key_path),
        "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "DATABASE_URL": DATABASE_URL,
        "GITHUB_TOKEN": TOKEN,
        "GH_TOKEN": TOKEN,
        "GITHUB_INSTALLATION_TOKEN": TOKEN,
        "AGENTZ_GIT_TOKEN": TOKEN,
        "GITHUB_APP_ID": "12345",
        "GITHUB_APP_CLIENT_SECRET": "app-client-secret-value",
        "AGENTZ_SECRET_EXTRA": "agentz-secret-extra-value",
    }
    assert set(SECRET_VARIABLES) <= set(values), "a new secret variable needs a value in this test"
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def _settings(tmp_path: Path, *, key_inline: bool) -> Settings:
    key = {"github_private_key": PEM} if key_inline else {"github_private_key_path": tmp_path / "app.private-key.pem"}
    return Settings.load(None, database_url=DATABASE_URL, state_dir=tmp_path / ".agent-z",
                         github_webhook_secret=WEBHOOK_SECRET, github_app_id=12345, **key)


def _secret_values(values: dict[str, str]) -> list[str]:
    plain = [value for name, value in values.items() if name not in ("GITHUB_APP_ID", "GITHUB_PRIVATE_KEY")]
    return [*plain, *_pem_lines()]


def test_scrubbed_env_from_the_real_process_environment_has_no_secrets(secret_environment: dict[str, str]) -> None:
    env = scrubbed_env({"EXTRA": "1"})
    assert env["EXTRA"] == "1"
    assert "PATH" in env
    assert not set(secret_environment) & set(env)
    dumped = json.dumps(env)
    assert [value for value in _secret_values(secret_environment) if value in dumped] == []


@pytest.mark.parametrize("key_inline", [True, False], ids=["key-in-variable", "key-in-file"])
def test_agent_env_from_the_real_process_environment_has_no_secrets(
    secret_environment: dict[str, str], tmp_path: Path, key_inline: bool
) -> None:
    env = agent_env(_settings(tmp_path, key_inline=key_inline), {"ANTHROPIC_API_KEY": "sk-provider"})
    assert env["ANTHROPIC_API_KEY"] == "sk-provider"
    assert not set(secret_environment) & set(env)
    dumped = json.dumps(env)
    assert [value for value in _secret_values(secret_environment) if value in dumped] == []


@pytest.mark.parametrize("backend", ["claude", "codex", "opencode"])
@pytest.mark.parametrize("key_inline", [True, False], ids=["key-in-variable", "key-in-file"])
async def test_cli_agents_get_no_secret_in_env_arguments_stdin_or_home(
    secret_environment: dict[str, str], tmp_path: Path, backend: str, key_inline: bool
) -> None:
    cli_dir = tmp_path / "clis"
    binary = cli_dir / "node_modules" / ".bin" / backend
    binary.parent.mkdir(parents=True)
    binary.write_text(RECORDER)
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    workdir = tmp_path / "work"
    workdir.mkdir()
    settings = _settings(tmp_path, key_inline=key_inline)
    runner = get_runner(backend, settings)
    env = {"AGENTZ_CLI_DIR": str(cli_dir), "AGENTZ_MODEL_BASE_URL": "http://127.0.0.1:9", "PATH": os.environ["PATH"]}
    with contextlib.suppress(RunnerError):  # the stand-in's answer need not parse; only what it received matters
        await runner.run("developer", "Implement the issue.", workdir, timeout=30, env=env)
    recorded = {name: (workdir / name).read_text() for name in ("agent-env.txt", "agent-argv.txt", "agent-stdin.txt")}
    names = {line.split("=", 1)[0] for line in recorded["agent-env.txt"].splitlines() if "=" in line}
    assert "HOME" in names
    assert "PATH" in names
    assert not names & set(secret_environment)
    written = [path.read_text(errors="replace") for path in (tmp_path / ".agent-z").rglob("*") if path.is_file()]
    everything = "\n".join([*recorded.values(), *written])
    assert [value[:12] for value in _secret_values(secret_environment) if value in everything] == []


async def test_scripted_agent_dumping_env_sees_no_secret_values(
    secret_environment: dict[str, str], tmp_path: Path
) -> None:
    from workers.runners.scripted import STEPS_VARIABLE

    workdir = tmp_path / "work"
    workdir.mkdir()
    steps = [{"role": "developer", "run": ["env > env.txt", "cat /proc/self/environ | tr '\\0' '\\n' >> env.txt"]}]
    runner = get_runner("scripted", _settings(tmp_path, key_inline=True))
    result = await runner.run("developer", "dump", workdir, timeout=30, env={STEPS_VARIABLE: json.dumps(steps)})
    assert result.ok, result.error
    dumped = (workdir / "env.txt").read_text()
    assert "PATH=" in dumped
    assert [value[:12] for value in _secret_values(secret_environment) if value in dumped] == []
