"""Model credentials reach only the agents of the backend that needs them, and a reused CLI login is read-only.

Each test runs a stand-in `claude` / `codex` CLI (a shell script in AGENTZ_CLI_DIR) through the real
runner and the bubblewrap sandbox; the script records what an agent could see and tries to tamper.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agentz_app.config import Settings
from tests.conftest import needs_sandbox
from workers.runners.claude import ClaudeRunner
from workers.runners.codex import CodexRunner

pytestmark = needs_sandbox

RESULT = '{"type":"result","subtype":"success","is_error":false,"result":"ok","session_id":"s-1"}'
CODEX_RESULT = '{"type":"thread.started","thread_id":"t-1"}\n{"type":"turn.completed","usage":{}}'

# What a prompt-injected agent would do with a reused login: read it, overwrite it, replace it.
SPY = r'''#!/bin/sh
cat > /dev/null
env | cut -d= -f1 | sort > env-names.txt
env > env-values.txt
cat "$CONFIG/$FILE" > seen-credentials.txt 2>&1
target=$(readlink "$CONFIG/$FILE")
echo "stolen" > "$target" 2>/dev/null && echo wrote-login > tamper.txt || echo login-read-only > tamper.txt
touch "$(dirname "$target")/planted" 2>/dev/null && echo planted >> tamper.txt
cat <<'RESULT_END'
$RESULT_LINES
RESULT_END
'''

PROVIDER_KEYS = {"ANTHROPIC_API_KEY": "sk-ant-api03-spy-test-0123456789",
                 "OPENAI_API_KEY": "sk-proj-spy-test-0123456789abcdef",
                 "OPENROUTER_API_KEY": "sk-or-v1-spy-test-0123456789"}


def _cli_dir(tmp_path: Path, name: str, config_variable: str, file: str, result: str) -> Path:
    folder = tmp_path / "clis"
    bin_dir = folder / "node_modules" / ".bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = SPY.replace("$CONFIG", "$" + config_variable).replace("$FILE", file).replace("$RESULT_LINES", result)
    (bin_dir / name).write_text(script)
    (bin_dir / name).chmod(0o755)
    return folder


def _settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **overrides: str) -> Settings:
    for name in (*PROVIDER_KEYS, "AGENTZ_CLI_DIR", "AGENTZ_MODEL_BASE_URL", "CLAUDE_CODE_OAUTH_TOKEN",
                 "CODEX_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in {**PROVIDER_KEYS, **overrides}.items()))
    return Settings.load(env_file, state_dir=tmp_path / "state", database_url=f"sqlite:///{tmp_path / 'db'}",
                         agent_sandbox="bwrap")


async def test_claude_agents_get_anthropics_key_from_env_file_and_no_other_providers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli_dir = _cli_dir(tmp_path, "claude", "CLAUDE_CONFIG_DIR", ".credentials.json", RESULT)
    settings = _settings(tmp_path, monkeypatch, AGENTZ_CLI_DIR=str(cli_dir))
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = await ClaudeRunner(settings).run("developer", "go", workdir, timeout=60)
    assert result.ok, result.error
    names = set((workdir / "env-names.txt").read_text().split())
    assert "ANTHROPIC_API_KEY" in names
    assert not {"OPENAI_API_KEY", "OPENROUTER_API_KEY", "AGENTZ_CLI_DIR"} & names
    values = (workdir / "env-values.txt").read_text()
    assert PROVIDER_KEYS["OPENAI_API_KEY"] not in values
    assert PROVIDER_KEYS["OPENROUTER_API_KEY"] not in values


async def test_codex_agents_get_openais_key_and_not_anthropics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cli_dir = _cli_dir(tmp_path, "codex", "CODEX_HOME", "auth.json", CODEX_RESULT)
    settings = _settings(tmp_path, monkeypatch, AGENTZ_CLI_DIR=str(cli_dir))
    workdir = tmp_path / "work"
    workdir.mkdir()
    await CodexRunner(settings).run("developer", "go", workdir, timeout=60)
    names = set((workdir / "env-names.txt").read_text().split())
    assert "OPENAI_API_KEY" in names
    assert not {"ANTHROPIC_API_KEY", "OPENROUTER_API_KEY"} & names
    assert PROVIDER_KEYS["ANTHROPIC_API_KEY"] not in (workdir / "env-values.txt").read_text()


@pytest.mark.parametrize(("runner", "name", "variable", "file", "setting", "result"), [
    (ClaudeRunner, "claude", "CLAUDE_CONFIG_DIR", ".credentials.json", "AGENT_CLAUDE_LOGIN_DIR", RESULT),
    (CodexRunner, "codex", "CODEX_HOME", "auth.json", "AGENT_CODEX_LOGIN_DIR", CODEX_RESULT),
])
async def test_a_reused_login_is_readable_by_the_agent_but_cannot_be_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runner: type[ClaudeRunner] | type[CodexRunner], name: str,
    variable: str, file: str, setting: str, result: str,
) -> None:
    login = tmp_path / "host-home" / f".{name}"
    login.mkdir(parents=True)
    (login / file).write_text('{"token": "oauth-token-of-the-host-user"}')
    cli_dir = _cli_dir(tmp_path, name, variable, file, result)
    settings = _settings(tmp_path, monkeypatch, AGENTZ_CLI_DIR=str(cli_dir), **{setting: str(login)})
    workdir = tmp_path / "work"
    workdir.mkdir()
    for _ in range(2):  # the link is made again on every call, whatever the agent left in its home
        outcome = await runner(settings).run("developer", "go", workdir, timeout=60)
        assert outcome.ok, outcome.error
        assert "oauth-token-of-the-host-user" in (workdir / "seen-credentials.txt").read_text()
        assert (workdir / "tamper.txt").read_text().split() == ["login-read-only"]
        assert (login / file).read_text() == '{"token": "oauth-token-of-the-host-user"}'
        assert sorted(os.listdir(login)) == [file]


async def test_a_home_whose_config_folder_was_replaced_by_a_symlink_is_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    login = tmp_path / "host-home" / ".claude"
    login.mkdir(parents=True)
    (login / ".credentials.json").write_text("{}")
    cli_dir = _cli_dir(tmp_path, "claude", "CLAUDE_CONFIG_DIR", ".credentials.json", RESULT)
    settings = _settings(tmp_path, monkeypatch, AGENTZ_CLI_DIR=str(cli_dir), AGENT_CLAUDE_LOGIN_DIR=str(login))
    workdir = tmp_path / "work"
    workdir.mkdir()
    runner = ClaudeRunner(settings)
    assert (await runner.run("developer", "go", workdir, timeout=60)).ok
    # Between calls, the agent's home is all it could have changed: point its config folder elsewhere.
    victim = tmp_path / "state" / "victim"
    victim.mkdir()
    home_config = next((tmp_path / "state" / "agent-homes" / "claude").glob("*/.claude"))
    for entry in home_config.iterdir():
        entry.unlink()
    home_config.rmdir()
    home_config.symlink_to(victim)
    with pytest.raises(Exception, match="symlink"):
        await runner.run("developer", "go", workdir, timeout=60)
    assert list(victim.iterdir()) == []


def test_a_config_file_the_agent_swapped_for_a_symlink_is_replaced_not_written_through(tmp_path: Path) -> None:
    """Codex's config.toml and OpenCode's opencode.json are rewritten by trusted code before each call."""
    from workers.runners.cli import write_private_file

    home = tmp_path / "home"
    (home / ".codex").mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("the service user's file\n")
    (home / ".codex" / "config.toml").symlink_to(victim)

    write_private_file(home, home / ".codex" / "config.toml", "model = 'x'\n")

    assert victim.read_text() == "the service user's file\n"
    assert not (home / ".codex" / "config.toml").is_symlink()
    assert (home / ".codex" / "config.toml").read_text() == "model = 'x'\n"


def test_a_config_folder_the_agent_swapped_for_a_symlink_is_refused(tmp_path: Path) -> None:
    from agentz_app.errors import RunnerError
    from workers.runners.cli import write_private_file

    home = tmp_path / "home"
    home.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (home / ".codex").symlink_to(elsewhere)

    with pytest.raises(RunnerError):
        write_private_file(home, home / ".codex" / "config.toml", "model = 'x'\n")
    assert list(elsewhere.iterdir()) == []
