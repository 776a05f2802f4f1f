"""Claude Code runner: ``claude -p --output-format stream-json``.

The prompt goes on stdin. A new conversation gets its id up front
(``--session-id UUID``); a later call continues it with ``--resume ID``. Options
(from the run's ``env`` or the process environment): ``AGENTZ_CLAUDE_PERMISSION_MODE``
(default ``acceptEdits``), ``AGENTZ_CLAUDE_ALLOWED_TOOLS`` (comma/space list, default
the file and shell tools; empty = none), ``AGENTZ_CLAUDE_MAX_TURNS`` (default 200).
A tool call the permission mode refused (``permission_denials``) or the sandbox refused
(an ``is_error`` tool result saying so) makes the run fail even though Claude exits 0.
"""

from __future__ import annotations

import uuid
from typing import Any

from agentz_app.domain.runner import RunnerResult
from agentz_app.procs import ProcessResult
from workers.runners.cli import ROLE_HEADER, CliRunner, Command, Invocation, common_home_env, split_words, stderr_tail
from workers.runners.output import extract_json, json_lines, refusal_reason

DEFAULT_ALLOWED_TOOLS = "Bash Edit MultiEdit Write Read Glob Grep LS NotebookEdit TodoWrite"


def _blocks(event: dict[str, Any]) -> list[dict[str, Any]]:
    message = event.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    return [block for block in content if isinstance(block, dict)] if isinstance(content, list) else []


def _result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content or "")


def parse_stream(stdout: str, stderr: str, exit_code: int) -> RunnerResult:
    """Parse Claude Code's stream-json output into a result.

    Besides a failed result and refused permissions, a tool result marked ``is_error`` whose
    text shows a sandbox or permission refusal ("Operation not permitted", "Read-only file
    system", ...) makes the result an error; a command that ran and failed (a failing test)
    does not.
    """
    stream = _Stream()
    for event in json_lines(stdout):
        stream.read(event)
    session_id, last_text, result, refusals = stream.session_id, stream.last_text, stream.result, stream.refusals
    if result is None:
        reason = f" ({refusals[-1]})" if refusals else ""
        return RunnerResult(exit_code or 1, session_id, last_text, json=extract_json(last_text),
                            error=f"claude exited with code {exit_code} without a result{reason}: "
                                  f"{stderr_tail(stderr)}")
    text = result.get("result") if isinstance(result.get("result"), str) else last_text
    denials = [str(item.get("tool_name", "?")) if isinstance(item, dict) else str(item)
               for item in result.get("permission_denials") or []]
    usage = result.get("usage") or {}
    tokens = sum(int(usage.get(key) or 0) for key in ("input_tokens", "output_tokens",
                                                       "cache_creation_input_tokens", "cache_read_input_tokens"))
    error = _error(result, exit_code, text or stderr_tail(stderr) or f"exit {exit_code}", denials, refusals)
    return RunnerResult(
        exit_code=exit_code,
        session_id=str(result.get("session_id") or session_id or "") or None,
        text=text or "",
        json=extract_json(text or ""),
        cost_usd=float(result.get("total_cost_usd") or 0.0),
        tokens=tokens,
        error=error,
        permission_denials=denials,
    )


class _Stream:
    """What the stream-json events said so far: session, last text, tools used, refusals, the result."""

    def __init__(self) -> None:
        self.session_id: str | None = None
        self.last_text = ""
        self.result: dict[str, Any] | None = None
        self.tools: dict[str, str] = {}
        self.refusals: list[str] = []

    def read(self, event: dict[str, Any]) -> None:
        self.session_id = event.get("session_id") or self.session_id
        if event.get("type") == "assistant":
            self._assistant(_blocks(event))
        elif event.get("type") == "user":
            self._tool_results(_blocks(event))
        elif event.get("type") == "result":
            self.result = event

    def _assistant(self, blocks: list[dict[str, Any]]) -> None:
        texts = [str(block.get("text", "")) for block in blocks if block.get("type") == "text"]
        if any(texts):
            self.last_text = "".join(texts)
        for block in blocks:
            if block.get("type") == "tool_use":
                self.tools[str(block.get("id"))] = str(block.get("name") or "tool")

    def _tool_results(self, blocks: list[dict[str, Any]]) -> None:
        for block in blocks:
            if block.get("type") == "tool_result" and block.get("is_error") is True:
                reason = refusal_reason(_result_text(block))
                if reason:
                    tool = self.tools.get(str(block.get("tool_use_id")), "a tool")
                    self.refusals.append(f"{tool} call refused: {reason}")


def _error(result: dict[str, Any], exit_code: int, detail: str, denials: list[str], refusals: list[str]) -> str | None:
    """Why the call failed (None when it did not): a failed result, a stop, refused permissions or tool calls."""
    subtype = result.get("subtype")
    if result.get("is_error") or exit_code != 0:
        reason = f" ({subtype})" if subtype not in (None, "success") else ""
        return f"claude failed{reason}: {detail}"
    if subtype not in (None, "success"):
        return f"claude stopped: {subtype}"
    if denials:
        return f"claude was refused permission for: {', '.join(denials)}"
    if refusals:
        more = f" (and {len(refusals) - 3} more)" if len(refusals) > 3 else ""
        return f"claude's {'; '.join(refusals[:3])}{more}"
    return None


class ClaudeRunner(CliRunner):
    """Claude Code in print mode."""

    name = "claude"
    binary = "claude"
    default_endpoints = ("https://api.anthropic.com",)

    def command(self, binary: str, call: Invocation) -> Command:
        """``claude -p`` with stream-json output, the prompt on stdin."""
        args = [binary, "-p", "--output-format", "stream-json", "--verbose",
                "--permission-mode", call.option("AGENTZ_CLAUDE_PERMISSION_MODE", "acceptEdits"),
                "--max-turns", call.option("AGENTZ_CLAUDE_MAX_TURNS", "200")]
        tools = split_words(call.options.get("AGENTZ_CLAUDE_ALLOWED_TOOLS", DEFAULT_ALLOWED_TOOLS))
        if tools:
            args += ["--allowedTools", ",".join(tools)]
        if call.model:
            args += ["--model", call.model]
        args += ["--resume", call.session_id] if call.session_id else ["--session-id", str(uuid.uuid4())]
        env = {
            **common_home_env(call.home),
            "CLAUDE_CONFIG_DIR": str(call.home / ".claude"),
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1",
        }
        if call.endpoint is not None:
            env.update({
                "ANTHROPIC_BASE_URL": call.endpoint.base_url,
                "ANTHROPIC_API_KEY": call.endpoint.api_key,
                "ANTHROPIC_CUSTOM_HEADERS": f"{ROLE_HEADER}: {call.role}",
                "CLAUDE_CODE_MAX_RETRIES": call.option("CLAUDE_CODE_MAX_RETRIES", "0"),
            })
        return Command(args, call.prompt, env)

    def parse(self, process: ProcessResult, call: Invocation) -> RunnerResult:
        """Read the stream-json events."""
        return parse_stream(process.stdout, process.stderr, process.exit_code)
