"""Honest runner failures: a tool call the sandbox refused fails the run even when the CLI exits 0.

Streams follow each CLI's JSON event schema (Codex ``exec --json`` items, Claude Code
stream-json, OpenCode ``run --format json``); a command that ran and failed on purpose
(a failing test) is not a runner failure.
"""

from __future__ import annotations

import json
from typing import Any

from structlog.testing import capture_logs

from workers.runners.claude import parse_stream as parse_claude
from workers.runners.codex import parse_stream as parse_codex
from workers.runners.opencode import parse_stream as parse_opencode
from workers.runners.output import json_lines, refusal_reason


def _lines(*events: dict[str, Any]) -> str:
    return "\n".join(json.dumps(event) for event in events) + "\n"


# Codex ----------------------------------------------------------------------------------------

def _codex(*items: dict[str, Any]) -> str:
    return _lines({"type": "thread.started", "thread_id": "th"}, {"type": "turn.started"},
                  *({"type": "item.completed", "item": {"id": f"item_{i}", **item}} for i, item in enumerate(items)),
                  {"type": "item.completed", "item": {"id": "last", "type": "agent_message", "text": "All done."}},
                  {"type": "turn.completed", "usage": {"input_tokens": 10, "output_tokens": 5}})


def test_codex_failed_file_change_is_an_error_even_with_exit_zero() -> None:
    stdout = _codex({"type": "file_change", "status": "failed",
                     "changes": [{"path": "/work/.git/hooks/pre-commit", "kind": "add"}]})
    result = parse_codex(stdout, "", 0)
    assert not result.ok
    assert result.exit_code == 1
    assert result.error == ("codex tool call failed: a file change could not be applied (failed): "
                            "/work/.git/hooks/pre-commit")
    stderr = "ERROR codex_core::tools::router: error=Exit code: 1\nOutput:\nFailed to write file /work/.git/hooks/x\n"
    assert (parse_codex(stdout, stderr, 0).error or "").endswith("Failed to write file /work/.git/hooks/x]")


def test_codex_command_refused_by_the_sandbox_carries_its_output() -> None:
    stdout = _codex({"type": "command_execution", "command": "bash -lc 'touch /etc/x'", "exit_code": 1,
                     "status": "failed", "aggregated_output": "touch: cannot touch '/etc/x': Read-only file system\n"})
    result = parse_codex(stdout, "", 0)
    assert not result.ok
    assert result.error
    assert "Read-only file system" in result.error
    assert "touch /etc/x" in result.error


def test_codex_declined_command_is_an_error() -> None:
    stdout = _codex({"type": "command_execution", "command": "curl evil.example", "aggregated_output": "",
                     "status": "declined"})
    assert parse_codex(stdout, "", 0).error == "codex tool call failed: command `curl evil.example` was declined"


def test_codex_command_that_could_not_start_is_an_error() -> None:
    stdout = _codex({"type": "command_execution", "command": "nosuchtool", "aggregated_output": "spawn failed",
                     "status": "failed"})
    assert "could not run: spawn failed" in (parse_codex(stdout, "", 0).error or "")


def test_codex_failing_test_command_is_not_a_runner_failure() -> None:
    stdout = _codex(
        {"type": "command_execution", "command": "pytest -q", "exit_code": 1, "status": "failed",
         "aggregated_output": "FAILED tests/test_app.py::test_add - assert 3 == 4\n1 failed"},
        {"type": "command_execution", "command": "make lint", "exit_code": 2, "status": "completed",
         "aggregated_output": "lint errors"},
    )
    result = parse_codex(stdout, "", 0)
    assert result.ok
    assert result.text == "All done."


def test_codex_failed_patch_fixed_by_a_later_one_is_forgiven() -> None:
    stdout = _codex({"type": "file_change", "status": "failed", "changes": [{"path": "src/a.py", "kind": "update"}]},
                    {"type": "file_change", "status": "completed", "changes": [{"path": "src/a.py", "kind": "update"}]})
    assert parse_codex(stdout, "", 0).ok


def test_codex_failed_mcp_call_carries_its_error_message() -> None:
    stdout = _codex({"type": "mcp_tool_call", "server": "s", "tool": "t", "status": "failed",
                     "error": {"message": "server refused the call"}})
    assert parse_codex(stdout, "", 0).error == "codex tool call failed: mcp_tool_call failed: server refused the call"


# Claude Code ----------------------------------------------------------------------------------

def _claude(result_text: str, *, is_error: bool, output: str) -> str:
    return _lines(
        {"type": "system", "subtype": "init", "session_id": "cs"},
        {"type": "assistant", "session_id": "cs", "message": {"content": [
            {"type": "tool_use", "id": "tu1", "name": "Bash", "input": {"command": "run it"}}]}},
        {"type": "user", "session_id": "cs", "message": {"content": [
            {"type": "tool_result", "tool_use_id": "tu1", "is_error": is_error,
             "content": [{"type": "text", "text": output}]}]}},
        {"type": "assistant", "session_id": "cs", "message": {"content": [{"type": "text", "text": result_text}]}},
        {"type": "result", "subtype": "success", "is_error": False, "result": result_text, "session_id": "cs",
         "permission_denials": [], "usage": {"input_tokens": 3, "output_tokens": 2}},
    )


def test_claude_tool_result_refused_by_the_sandbox_is_an_error() -> None:
    stdout = _claude("I could not write the file.", is_error=True,
                     output="Exit code 1\nbash: /home/agent/.ssh/id_rsa: Operation not permitted")
    result = parse_claude(stdout, "", 0)
    assert not result.ok
    assert result.error == "claude's Bash call refused: bash: /home/agent/.ssh/id_rsa: Operation not permitted"


def test_claude_failing_command_is_not_a_runner_failure() -> None:
    stdout = _claude("Tests fail before my fix, pass after.", is_error=True,
                     output="Exit code 1\nFAILED tests/test_x.py::test_y - AssertionError")
    assert parse_claude(stdout, "", 0).ok


def test_claude_successful_output_mentioning_permissions_is_not_a_failure() -> None:
    stdout = _claude("Done.", is_error=False, output="docs: explain 'Permission denied' errors")
    assert parse_claude(stdout, "", 0).ok


# OpenCode -------------------------------------------------------------------------------------

def _opencode(*tool_parts: dict[str, Any]) -> str:
    return _lines(
        {"type": "step_start", "sessionID": "ses_1", "part": {"type": "step-start"}},
        *({"type": "tool_use", "sessionID": "ses_1", "part": {"type": "tool", "callID": f"c{i}", **part}}
          for i, part in enumerate(tool_parts)),
        {"type": "step_finish", "sessionID": "ses_1", "part": {"type": "step-finish", "tokens": {"input": 4,
                                                                                                 "output": 1}}},
        {"type": "step_start", "sessionID": "ses_1", "part": {"type": "step-start"}},
        {"type": "text", "sessionID": "ses_1", "part": {"type": "text", "text": "Finished."}},
        {"type": "step_finish", "sessionID": "ses_1", "part": {"type": "step-finish", "reason": "stop"}},
    )


def test_opencode_tool_error_from_a_permission_rule_is_an_error() -> None:
    stdout = _opencode({"tool": "write", "state": {"status": "error", "input": {"filePath": "/etc/cron.d/x"},
                                                   "error": "EACCES: permission denied, open '/etc/cron.d/x'"}})
    result = parse_opencode(stdout, "", 0)
    assert not result.ok
    assert result.exit_code == 1
    assert result.error == "opencode's write call refused: EACCES: permission denied, open '/etc/cron.d/x'"


def test_opencode_bash_refused_by_the_sandbox_is_an_error() -> None:
    stdout = _opencode({"tool": "bash", "state": {"status": "completed", "input": {"command": "rm -rf .git"},
                                                  "output": "rm: cannot remove '.git/HEAD': Read-only file system",
                                                  "metadata": {"exit": 1}}})
    assert "Read-only file system" in (parse_opencode(stdout, "", 0).error or "")


def test_opencode_ordinary_tool_errors_and_failing_tests_are_not_runner_failures() -> None:
    stdout = _opencode(
        {"tool": "edit", "state": {"status": "error", "error": "oldString not found in content"}},
        {"tool": "bash", "state": {"status": "completed", "output": "1 failed, 3 passed", "metadata": {"exit": 1}}},
    )
    result = parse_opencode(stdout, "", 0)
    assert result.ok
    assert result.text == "Finished."


# Shared helpers -------------------------------------------------------------------------------

def test_refusal_reason_finds_sandbox_wording_but_not_ordinary_failures() -> None:
    assert refusal_reason("ok\nwrite blocked by sandbox policy\nmore") == "write blocked by sandbox policy"
    assert refusal_reason("bwrap: Can't mount proc") == "bwrap: Can't mount proc"
    assert refusal_reason("AssertionError: sandbox fixture returned 3") is None
    assert refusal_reason("2 failed, 10 passed") is None


def test_json_lines_skips_an_oversized_line_with_a_note_in_the_log() -> None:
    huge = json.dumps({"type": "item", "blob": "x" * 2000})
    with capture_logs() as logs:
        events = json_lines('{"type": "a"}\n' + huge + '\n{"type": "b"}\n', max_line=1000)
    assert events == [{"type": "a"}, {"type": "b"}]
    assert logs
    assert logs[0]["event"] == "agent output line too long to parse; skipped"


def test_json_lines_survives_nesting_too_deep_to_decode() -> None:
    deep = '{"a": ' * 100_000 + "1" + "}" * 100_000
    assert json_lines(deep + '\n{"type": "ok"}') == [{"type": "ok"}]


def test_json_lines_keeps_lines_with_unicode_line_separators_whole() -> None:
    assert json_lines(json.dumps({"text": "a\u2028b"}, ensure_ascii=False)) == [{"text": "a\u2028b"}]
