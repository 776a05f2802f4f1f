"""Codex CLI through our runner against the fake model (skipped when the CLI is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration import cli_support as cs
from workers.runners.codex import CodexRunner, parse_stream


@pytest.fixture
def cli_dir() -> str:
    return cs.cli_dir_or_skip("codex")


@pytest.fixture
def runner(tmp_path: Path) -> CodexRunner:
    return CodexRunner(cs.make_settings(tmp_path))


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


async def test_codex_writes_a_file_and_its_json_answer_is_parsed(runner: CodexRunner, cli_dir: str,
                                                                 workdir: Path) -> None:
    await cs.check_writes_file_and_parses_json(runner, cli_dir, workdir)


async def test_codex_resumes_the_same_thread_with_write_access(runner: CodexRunner, cli_dir: str,
                                                               workdir: Path) -> None:
    await cs.check_resumes_session(runner, cli_dir, workdir)


async def test_codex_timeout_kills_its_process_group(runner: CodexRunner, cli_dir: str, workdir: Path) -> None:
    await cs.check_timeout_kills_process_group(runner, cli_dir, workdir)


async def test_codex_fails_fast_when_the_model_server_is_down(runner: CodexRunner, cli_dir: str,
                                                              workdir: Path) -> None:
    await cs.check_server_down_fails(runner, cli_dir, workdir, timeout=30)


async def test_codex_reports_a_rejected_request_as_failure(runner: CodexRunner, cli_dir: str,
                                                           workdir: Path) -> None:
    await cs.check_rejected_request_fails(runner, cli_dir, workdir)


def _lines(*events: dict[str, object]) -> str:
    return "\n".join(json.dumps(event) for event in events)


def test_turn_failed_is_a_failure_with_its_message() -> None:
    stdout = _lines({"type": "thread.started", "thread_id": "t1"}, {"type": "turn.started"},
                    {"type": "error", "message": "stream disconnected"},
                    {"type": "turn.failed", "error": {"message": "stream disconnected before completion"}})
    result = parse_stream(stdout, "", 1)
    assert not result.ok
    assert result.session_id == "t1"
    assert result.error
    assert "stream disconnected before completion" in result.error


def test_error_event_fails_even_with_exit_zero() -> None:
    result = parse_stream(_lines({"type": "error", "message": "quota exceeded"}), "", 0)
    assert result.exit_code == 1
    assert result.error
    assert "quota exceeded" in result.error


def test_non_fatal_error_items_do_not_fail_the_run() -> None:
    stdout = _lines({"type": "thread.started", "thread_id": "t"},
                    {"type": "item.completed", "item": {"type": "error", "message": "model metadata not found"}},
                    {"type": "item.completed", "item": {"type": "agent_message", "text": 'ok {"verdict": "approve"}'}},
                    {"type": "turn.completed", "usage": {"input_tokens": 7, "output_tokens": 3}})
    result = parse_stream(stdout, "", 0)
    assert result.ok
    assert result.json == {"verdict": "approve"}
    assert result.tokens == 10
