"""Configuration and database problems end a command with one clear line, and read-only commands create nothing."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from agentz_app.cli import cli


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "GITHUB_APP_ID", "GITHUB_PRIVATE_KEY", "GITHUB_PRIVATE_KEY_PATH",
                 "GITHUB_WEBHOOK_SECRET", "GITHUB_REPO", "DEFAULT_BACKEND", "STATE_DIR"):
        monkeypatch.delenv(name, raising=False)


def invoke(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(cli, ["--env-file", "/nonexistent", *args], env={"LOG_FORMAT": "json", **env})


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize("command", [["runs", "list"], ["migrate"], ["top"], ["deliveries", "list"], ["prune"]])
def test_an_unreachable_database_is_one_line_naming_database_url_and_the_cause(command: list[str]) -> None:
    url = f"postgresql://agentz:hunter2-password@127.0.0.1:{_closed_port()}/agentz"
    result = invoke({"DATABASE_URL": url}, *command)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: DATABASE_URL: cannot connect to postgresql")
    assert "refused" in lines[0] or "failed" in lines[0]
    assert "hunter2-password" not in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", [["runs", "list"], ["runs", "inspect", "abc"], ["deliveries", "list"], ["top"]])
def test_read_only_commands_never_create_a_database(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "agentz.db"
    result = invoke({"DATABASE_URL": f"sqlite:///{path}", "STATE_DIR": str(tmp_path / "state")}, *command)
    assert result.exit_code == 1
    assert f"DATABASE_URL: no database at {path}" in result.output
    assert "agentz migrate" in result.output
    assert not path.exists()


def test_a_sqlite_path_in_a_missing_folder_is_an_error_not_a_new_folder(tmp_path: Path) -> None:
    mistyped = tmp_path / "var" / "lib" / "agnetz" / "agentz.db"
    result = invoke({"DATABASE_URL": f"sqlite:///{mistyped}", "STATE_DIR": str(tmp_path / "state")}, "migrate")
    assert result.exit_code == 1
    assert f"DATABASE_URL: the folder {mistyped.parent} of the SQLite database does not exist" in result.output
    assert not (tmp_path / "var").exists()


def test_the_database_may_be_created_in_the_state_folder(tmp_path: Path) -> None:
    state = tmp_path / "state"
    result = invoke({"DATABASE_URL": f"sqlite:///{state / 'agentz.db'}", "STATE_DIR": str(state)}, "migrate")
    assert result.exit_code == 0, result.output
    assert (state / "agentz.db").is_file()


def test_every_invalid_variable_is_reported_at_once(tmp_path: Path) -> None:
    result = invoke({"MAX_PARALLEL_TASKS": "two", "RECEIVER_PORT": "-1", "DEFAULT_BACKEND": "gpt"}, "runs", "list")
    assert result.exit_code == 1
    assert "invalid configuration (3 settings)" in result.output
    for variable in ("MAX_PARALLEL_TASKS", "RECEIVER_PORT", "DEFAULT_BACKEND"):
        assert f"\n  {variable}: " in result.output
