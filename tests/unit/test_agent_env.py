"""Agents get a scrubbed environment: provider settings yes, Agent-Z's secrets never."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from agentz_app.config import SECRET_VARIABLES, Settings
from agentz_app.secrets import configured_secret_values
from workers.runners.registry import agent_env
from workers.runners.scripted import STEPS_VARIABLE, ScriptedRunner

SECRETS = {name: f"secret-value-of-{name.lower()}" for name in SECRET_VARIABLES}


def test_agent_env_drops_secret_variables_and_keeps_its_providers_settings(settings: Settings) -> None:
    base = {"PATH": "/usr/bin", "ANTHROPIC_API_KEY": "sk-ant", "ANTHROPIC_BASE_URL": "http://x", "RANDOM": "1",
            **SECRETS}
    env = agent_env(settings, {"GH_TOKEN": "ghp_x", "EXTRA": "yes"}, base=base, backend="claude")
    assert env["PATH"] == "/usr/bin"
    assert env["ANTHROPIC_API_KEY"] == "sk-ant"
    assert env["ANTHROPIC_BASE_URL"] == "http://x"
    assert env["EXTRA"] == "yes"
    assert "RANDOM" not in env
    assert not set(SECRET_VARIABLES) & set(env)


PROVIDERS = {"ANTHROPIC_API_KEY": "sk-ant-key-0123456789", "CLAUDE_CODE_OAUTH_TOKEN": "sk-ant-oat-0123456789",
             "OPENAI_API_KEY": "sk-openai-0123456789", "CODEX_API_KEY": "sk-codex-0123456789",
             "OPENROUTER_API_KEY": "sk-or-0123456789", "AGENTZ_MODEL": "some-model", "PATH": "/usr/bin"}


@pytest.mark.parametrize(("backend", "expected"), [
    ("claude", {"ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "AGENTZ_MODEL"}),
    ("codex", {"OPENAI_API_KEY", "CODEX_API_KEY", "AGENTZ_MODEL"}),
    ("opencode", {"ANTHROPIC_API_KEY", "OPENAI_API_KEY", "OPENROUTER_API_KEY", "AGENTZ_MODEL"}),
    ("scripted", {"AGENTZ_MODEL"}),
    (None, {"AGENTZ_MODEL"}),
])
def test_each_backend_gets_only_its_providers_credentials(
    settings: Settings, backend: str | None, expected: set[str]
) -> None:
    env = agent_env(settings, base=PROVIDERS, backend=backend)
    assert set(env) - {"PATH"} == expected


def test_model_credentials_in_the_env_file_reach_the_backend_that_needs_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in PROVIDERS:
        if name != "PATH":
            monkeypatch.delenv(name, raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text("ANTHROPIC_API_KEY=sk-ant-from-file-0123\nOPENAI_API_KEY=sk-openai-from-file-0123\n"
                        "AGENTZ_MODEL=claude-from-file\n")
    settings = Settings.load(env_file, state_dir=tmp_path / "state")
    claude = agent_env(settings, base={"PATH": "/bin"}, backend="claude")
    codex = agent_env(settings, base={"PATH": "/bin"}, backend="codex")
    assert claude["ANTHROPIC_API_KEY"] == "sk-ant-from-file-0123"
    assert "OPENAI_API_KEY" not in claude
    assert codex["OPENAI_API_KEY"] == "sk-openai-from-file-0123"
    assert "ANTHROPIC_API_KEY" not in codex
    assert claude["AGENTZ_MODEL"] == codex["AGENTZ_MODEL"] == "claude-from-file"
    # The process environment wins over the file, as for every other setting.
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-from-env-0123")
    assert agent_env(settings, base=dict(os.environ), backend="claude")["ANTHROPIC_API_KEY"] == "sk-ant-from-env-0123"


def test_model_keys_from_the_env_file_are_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text("ANTHROPIC_API_KEY=sk-ant-api03-from-the-file-0123456789\n")
    settings = Settings.load(env_file)
    assert "sk-ant-api03-from-the-file-0123456789" in configured_secret_values(settings, {})
    assert "from-the-file" not in repr(settings)
    assert "from-the-file" not in str(settings.model_dump())


def test_agent_env_drops_variables_carrying_a_secret_value_under_another_name(settings: Settings) -> None:
    env = agent_env(settings, {"SNEAKY": "test-secret", "DB": settings.database_url}, base={"PATH": "/bin"})
    assert "SNEAKY" not in env
    assert "DB" not in env


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
