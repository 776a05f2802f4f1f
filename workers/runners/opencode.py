"""OpenCode runner: ``opencode run --format json``, continued with ``--session``.

The prompt goes on stdin (as an argument it reaches the model wrapped in quotes).
A private config file (``OPENCODE_CONFIG``) allows edits and shell commands, turns
sharing and auto-update off and, with ``AGENTZ_MODEL_BASE_URL``, declares that
server as an OpenAI-compatible provider.
"""

from __future__ import annotations

import json
from typing import Any

from agentz_app.domain.runner import RunnerResult
from agentz_app.procs import ProcessResult
from workers.runners.cli import (
    ROLE_HEADER,
    CliRunner,
    Command,
    Invocation,
    common_home_env,
    stderr_tail,
    write_private_file,
)
from workers.runners.output import extract_json, json_lines, refusal_reason

PROVIDER = "agentz"


def config_document(call: Invocation) -> dict[str, Any]:
    """The OpenCode configuration for this call."""
    document: dict[str, Any] = {
        "$schema": "https://opencode.ai/config.json",
        "autoupdate": False,
        "share": "disabled",
        "permission": {"edit": "allow", "bash": "allow", "webfetch": "deny"},
    }
    if call.endpoint is not None:
        model = call.model or "model"
        document["provider"] = {
            PROVIDER: {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Agent-Z model endpoint",
                "options": {"baseURL": call.endpoint.v1, "apiKey": call.endpoint.api_key,
                            "headers": {ROLE_HEADER: call.role}},
                "models": {model: {"name": model, "tool_call": True}},
            }
        }
        document["model"] = f"{PROVIDER}/{model}"
        document["small_model"] = f"{PROVIDER}/{model}"
    elif call.model:
        document["model"] = call.model
    return document


def _error_message(event: dict[str, Any]) -> str:
    error = event.get("error")
    if isinstance(error, dict):
        data = error.get("data")
        if isinstance(data, dict) and data.get("message"):
            return str(data["message"])
        return str(error.get("message") or error.get("name") or json.dumps(error))
    return str(error or event.get("message") or "unknown error")


def _tool_refusal(part: dict[str, Any]) -> str | None:
    """Why a finished tool call was refused by the sandbox or a permission rule, or None.

    A tool in state ``error`` whose error shows a refusal counts, and so does a bash command
    that exited non-zero with such output; an edit that did not match or a failing test does not.
    """
    raw_state = part.get("state")
    state: dict[str, Any] = raw_state if isinstance(raw_state, dict) else {}
    tool = str(part.get("tool") or "tool")
    if state.get("status") == "error":
        reason = refusal_reason(str(state.get("error") or ""))
    elif state.get("status") == "completed" and tool == "bash":
        raw_metadata = state.get("metadata")
        metadata: dict[str, Any] = raw_metadata if isinstance(raw_metadata, dict) else {}
        exit_status = metadata.get("exit")
        failed = isinstance(exit_status, int) and exit_status != 0
        reason = refusal_reason(str(state.get("output") or metadata.get("output") or "")) if failed else None
    else:
        return None
    return f"{tool} call refused: {reason}" if reason else None


def parse_stream(stdout: str, stderr: str, exit_code: int) -> RunnerResult:
    """Parse ``opencode run --format json`` events into a result.

    Error events fail the run; so does a tool call the sandbox or a permission rule refused
    (see :func:`_tool_refusal`), even when OpenCode exits 0.
    """
    session_id: str | None = None
    texts: list[str] = []
    tokens = 0
    cost = 0.0
    errors: list[str] = []
    refusals: list[str] = []
    for event in json_lines(stdout):
        raw_part = event.get("part")
        part: dict[str, Any] = raw_part if isinstance(raw_part, dict) else {}
        session_id = event.get("sessionID") or part.get("sessionID") or session_id
        kind = event.get("type")
        if kind == "step_start":
            texts = []  # keep only the last step's text as the final answer
        elif kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "step_finish":
            token_counts = part.get("tokens") or {}
            tokens += int(token_counts.get("input") or 0) + int(token_counts.get("output") or 0)
            cost += float(part.get("cost") or 0.0)
        elif kind == "tool_use":
            reason = _tool_refusal(part)
            if reason is not None:
                refusals.append(reason)
        elif kind == "error":
            errors.append(_error_message(event))
    text = "".join(texts)
    error: str | None = None
    if errors or exit_code != 0:
        detail = errors[-1] if errors else stderr_tail(stderr)
        error = f"opencode failed (exit {exit_code}): {detail}".strip()
    elif refusals:
        more = f" (and {len(refusals) - 3} more)" if len(refusals) > 3 else ""
        error = f"opencode's {'; '.join(refusals[:3])}{more}"
    return RunnerResult(exit_code=exit_code or (1 if errors or refusals else 0), session_id=session_id, text=text,
                        json=extract_json(text), cost_usd=cost, tokens=tokens, error=error)


class OpenCodeRunner(CliRunner):
    """OpenCode's non-interactive ``run`` command."""

    name = "opencode"
    binary = "opencode"
    default_endpoints = ("https://api.anthropic.com", "https://api.openai.com", "https://openrouter.ai")

    def command(self, binary: str, call: Invocation) -> Command:
        """``opencode run --format json`` with the prompt on stdin."""
        config_path = call.home / "opencode.json"
        write_private_file(call.home, config_path, json.dumps(config_document(call), indent=2))
        args = [binary, "run", "--format", "json"]
        if call.session_id:
            args += ["--session", call.session_id]
        env = {
            **common_home_env(call.home),
            "OPENCODE_CONFIG": str(config_path),
            "OPENCODE_DISABLE_AUTOUPDATE": "1",
            "OPENCODE_DISABLE_MODELS_FETCH": "1",
            "OPENCODE_DISABLE_SHARE": "1",
            "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
        }
        return Command(args, call.prompt, env)

    def parse(self, process: ProcessResult, call: Invocation) -> RunnerResult:
        """Read the JSON events."""
        return parse_stream(process.stdout, process.stderr, process.exit_code)
