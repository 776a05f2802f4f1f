"""Agents get a scrubbed environment: provider settings yes, Agent-Z's secrets never."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentz_app.config import SECRET_VARIABLES, Settings
from workers.runners.registry import agent_env
from workers.runners.scripted import STEPS_VARIABLE, ScriptedRunner

SECRETS = {name: f"secret-value-of-{name.lower()}" for name in SECRET_VARIABLES}


def test_agent_env_drops_secret_variables_and_keeps_provider_settings(settings: Settings) -> None:
    base = {"PATH": "/usr/bin", "ANTHROPIC_API_KEY": "sk-ant", "OPENAI_BASE_URL": "http://x", "RANDOM": "1", **SECRETS}
    env = agent_env(settings, {"GH_TOKEN": "ghp_x", "EXTRA": "yes"}, base=base)
    assert env["PATH"] == "/usr/bin"
    assert env["ANTHROPIC_API_KEY"] == "sk-ant" and env["OPENAI_BASE_URL"] == "http://x"
    assert env["EXTRA"] == "yes"
    assert "RANDOM" not in env
    assert not set(SECRET_VARIABLES) & set(env)


def test_agent_env_drops_variables_carrying_a_secret_value_under_another_name(settings: Settings) -> None:
    env = agent_env(settings, {"SNEAKY": "test-secret", "DB": settings.database_url}, base={"PATH": "/bin"})
    assert "SNEAKY" not in env and "DB" not in env


async def test_agent_process_sees_none_of_the_secret_variables(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("GITHUB_APP_ID_EXTRA", "nope")
    workdir = tmp_path / "work"
    workdir.mkdir()
    steps = [{"role": "developer", "run": ["env > env.txt"]}]
    result = await ScriptedRunner(settings).run(
        "developer", "dump env", workdir, timeout=30, env={STEPS_VARIABLE: json.dumps(steps)}
    )
    assert result.ok, result.error
    dumped = (workdir / "env.txt").read_text()
    names = {line.split("=", 1)[0] for line in dumped.splitlines() if "=" in line}
    assert "PATH" in names
    assert not names & set(SECRET_VARIABLES)
    assert "GITHUB_APP_ID_EXTRA" not in names
    for value in SECRETS.values():
        assert value not in dumped
