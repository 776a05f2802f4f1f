"""OpenCode through our runner against the fake model (skipped when the CLI is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration import cli_support as cs
from workers.runners.opencode import OpenCodeRunner, parse_stream


@pytest.fixture
def cli_dir() -> str:
    return cs.cli_dir_or_skip("opencode")


@pytest.fixture
def runner(tmp_path: Path) -> OpenCodeRunner:
    return OpenCodeRunner(cs.make_settings(tmp_path))


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


async def test_opencode_writes_a_file_and_its_json_answer_is_parsed(runner: OpenCodeRunner, cli_dir: str,
                                                                    workdir: Path) -> None:
    await cs.check_writes_file_and_parses_json(runner, cli_dir, workdir)


async def test_opencode_resumes_the_same_session(runner: OpenCodeRunner, cli_dir: str, workdir: Path) -> None:
    await cs.check_resumes_session(runner, cli_dir, workdir)


async def test_opencode_timeout_kills_its_process_group(runner: OpenCodeRunner, cli_dir: str,
                                                        workdir: Path) -> None:
    await cs.check_timeout_kills_process_group(runner, cli_dir, workdir, timeout=12)


async def test_opencode_reports_a_rejected_request_as_failure(runner: OpenCodeRunner, cli_dir: str,
                                                              workdir: Path) -> None:
    await cs.check_rejected_request_fails(runner, cli_dir, workdir)


@pytest.mark.slow
async def test_opencode_fails_when_the_model_server_is_down(runner: OpenCodeRunner, cli_dir: str,
                                                            workdir: Path) -> None:
    # OpenCode 1.18 retries a refused connection five times with fixed back-off (~70 s); no knob turns it off.
    await cs.check_server_down_fails(runner, cli_dir, workdir, timeout=150)


def _lines(*events: dict[str, object]) -> str:
    return "\n".join(json.dumps(event) for event in events)


def test_error_event_is_a_failure_with_its_message() -> None:
    stdout = _lines({"type": "step_start", "sessionID": "ses_1", "part": {}},
                    {"type": "error", "sessionID": "ses_1",
                     "error": {"name": "APIError", "data": {"message": "Cannot connect to API"}}})
    result = parse_stream(stdout, "", 1)
    assert not result.ok
    assert result.session_id == "ses_1"
    assert result.error
    assert "Cannot connect to API" in result.error


def test_final_text_is_the_last_steps_text_with_tokens_and_cost_summed() -> None:
    stdout = _lines(
        {"type": "step_start", "sessionID": "s", "part": {}},
        {"type": "text", "sessionID": "s", "part": {"text": "Let me write the file."}},
        {"type": "step_finish", "sessionID": "s", "part": {"tokens": {"input": 10, "output": 2}, "cost": 0.01}},
        {"type": "step_start", "sessionID": "s", "part": {}},
        {"type": "text", "sessionID": "s", "part": {"text": '```json\n{"verdict": "approve"}\n```'}},
        {"type": "step_finish", "sessionID": "s", "part": {"tokens": {"input": 20, "output": 3}, "cost": 0.02}},
    )
    result = parse_stream(stdout, "", 0)
    assert result.ok
    assert result.json == {"verdict": "approve"}
    assert result.text.startswith("```json")
    assert result.tokens == 35
    assert abs(result.cost_usd - 0.03) < 1e-9
