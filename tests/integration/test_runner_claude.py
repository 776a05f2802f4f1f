"""Claude Code through our runner against the fake model (skipped when the CLI is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentz_app.fakemodel import FakeModelServer
from tests.integration import cli_support as cs
from workers.runners.claude import ClaudeRunner, parse_stream


@pytest.fixture
def cli_dir() -> str:
    return cs.cli_dir_or_skip("claude")


@pytest.fixture
def runner(tmp_path: Path) -> ClaudeRunner:
    return ClaudeRunner(cs.make_settings(tmp_path))


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


async def test_claude_writes_a_file_and_its_json_answer_is_parsed(runner: ClaudeRunner, cli_dir: str,
                                                                  workdir: Path) -> None:
    await cs.check_writes_file_and_parses_json(runner, cli_dir, workdir)


async def test_claude_resumes_the_same_session(runner: ClaudeRunner, cli_dir: str, workdir: Path) -> None:
    await cs.check_resumes_session(runner, cli_dir, workdir)


async def test_claude_timeout_kills_its_process_group(runner: ClaudeRunner, cli_dir: str, workdir: Path) -> None:
    await cs.check_timeout_kills_process_group(runner, cli_dir, workdir)


async def test_claude_fails_fast_when_the_model_server_is_down(runner: ClaudeRunner, cli_dir: str,
                                                               workdir: Path) -> None:
    await cs.check_server_down_fails(runner, cli_dir, workdir, timeout=30)


async def test_claude_permission_denial_is_reported_as_failure(runner: ClaudeRunner, cli_dir: str,
                                                               workdir: Path) -> None:
    scenario = cs.write_then_answer("denied.txt", "x\n", cs.ANSWER)
    async with FakeModelServer(scenario) as server:
        env = {**cs.cli_env(cli_dir, server), "AGENTZ_CLAUDE_PERMISSION_MODE": "default",
               "AGENTZ_CLAUDE_ALLOWED_TOOLS": ""}
        result = await runner.run("developer", "Implement issue #1", workdir, timeout=60, env=env)
    assert result.exit_code == 0
    assert not result.ok
    assert result.permission_denials == ["Write"]
    assert result.error
    assert "Write" in result.error
    assert not (workdir / "denied.txt").exists()


def _lines(*events: dict[str, object]) -> str:
    return "\n".join(json.dumps(event) for event in events)


def test_error_result_fails_even_when_subtype_says_success() -> None:
    stdout = _lines({"type": "system", "subtype": "init", "session_id": "s1"},
                    {"type": "result", "subtype": "success", "is_error": True, "session_id": "s1",
                     "result": "API Error: Unable to connect to API (ConnectionRefused)"})
    result = parse_stream(stdout, "", 1)
    assert not result.ok
    assert result.session_id == "s1"
    assert result.error
    assert "Unable to connect" in result.error


def test_max_turns_result_is_a_failure() -> None:
    stdout = _lines({"type": "result", "subtype": "error_max_turns", "is_error": False, "session_id": "s"})
    assert parse_stream(stdout, "", 0).error == "claude stopped: error_max_turns"


def test_missing_result_event_reports_stderr() -> None:
    result = parse_stream("not json\n", "Error: invalid API key\n", 1)
    assert not result.ok
    assert result.error
    assert "invalid API key" in result.error


def test_cost_tokens_and_last_json_are_read_from_the_result() -> None:
    text = 'Plan:\n```json\n{"a": 1}\n```\nfinal: ```json\n{"b": 2}\n```'
    stdout = _lines({"type": "result", "subtype": "success", "is_error": False, "session_id": "s", "result": text,
                     "total_cost_usd": 0.5, "usage": {"input_tokens": 10, "output_tokens": 5},
                     "permission_denials": []})
    result = parse_stream(stdout, "", 0)
    assert result.ok
    assert result.json == {"b": 2}
    assert (result.cost_usd, result.tokens) == (0.5, 15)
