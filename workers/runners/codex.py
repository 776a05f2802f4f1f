"""Codex CLI runner: ``codex exec --json``, continued with ``codex exec resume``.

The prompt goes on stdin (``-``). Configuration lives in a private ``CODEX_HOME``
whose ``config.toml`` turns analytics, telemetry and plugins off and, with
``AGENTZ_MODEL_BASE_URL``, points Codex at that server with retries off. Option
``AGENTZ_CODEX_SANDBOX`` is passed again on resume, where Codex would otherwise fall
back to read-only. Its default is ``danger-full-access`` inside Agent-Z's sandbox
(Codex's own bubblewrap cannot nest in ours) and ``workspace-write`` without it.
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
from workers.runners.output import extract_json, json_lines, refusal_reason, shorten

PROVIDER = "agentz"
KEY_VARIABLE = "AGENTZ_MODEL_API_KEY"


def _toml(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def config_toml(call: Invocation) -> str:
    """The ``config.toml`` for this call."""
    lines = []
    if call.model:
        lines.append(f"model = {_toml(call.model)}")
    if call.endpoint is not None:
        lines += [
            f"model_provider = {_toml(PROVIDER)}",
            "",
            f"[model_providers.{PROVIDER}]",
            'name = "Agent-Z model endpoint"',
            f"base_url = {_toml(call.endpoint.v1)}",
            f"env_key = {_toml(KEY_VARIABLE)}",
            'wire_api = "responses"',
            "request_max_retries = 0",
            "stream_max_retries = 0",
            f"http_headers = {{ {_toml(ROLE_HEADER)} = {_toml(call.role)} }}",
        ]
    lines += [
        "",
        "[analytics]",
        "enabled = false",
        "",
        "[otel]",
        'exporter = "none"',
        'metrics_exporter = "none"',
        "",
        "[features]",
        "plugins = false",
        "",
    ]
    return "\n".join(lines)


def _item_failure(item: dict[str, Any]) -> str | None:
    """Why a completed item means the tool could not do its job, or None.

    ``declined`` (refused by the approval policy or the sandbox) always counts. A
    ``command_execution`` marked ``failed`` with an exit code is a command that ran and
    exited non-zero, such as a failing test the agent ran on purpose: it only counts when
    its output shows a sandbox or permission refusal, or when it has no exit code (it
    could not start). Any other ``failed`` item (``file_change``, ``mcp_tool_call``) counts.
    """
    status = item.get("status")
    kind = str(item.get("type") or "item")
    if status not in ("failed", "declined"):
        return None
    if kind == "command_execution":
        command = shorten(str(item.get("command") or "?"), 200)
        output = str(item.get("aggregated_output") or "")
        if status == "declined":
            return f"command `{command}` was declined" + (f": {shorten(output)}" if output.strip() else "")
        if item.get("exit_code") is None:
            return f"command `{command}` could not run" + (f": {shorten(output)}" if output.strip() else "")
        reason = refusal_reason(output)
        return f"command `{command}` was refused: {reason}" if reason else None
    if kind == "file_change":
        paths = ", ".join(str(change.get("path")) for change in item.get("changes") or [] if isinstance(change, dict))
        return f"a file change could not be applied ({status}){': ' + shorten(paths, 500) if paths else ''}"
    error = item.get("error")
    message = error.get("message") if isinstance(error, dict) else error or item.get("message")
    return f"{kind} {status}" + (f": {shorten(str(message))}" if message else "")


def _changed_paths(item: dict[str, Any]) -> set[str]:
    return {str(change.get("path")) for change in item.get("changes") or [] if isinstance(change, dict)}


def parse_stream(stdout: str, stderr: str, exit_code: int) -> RunnerResult:
    """Parse ``codex exec --json`` JSONL events into a result.

    A tool call that could not run (see :func:`_item_failure`) makes the result an error
    carrying the tool's own message, even when Codex exits 0. A failed file change that a
    later file change to the same paths made good is forgiven.
    """
    stream = _Stream()
    for event in json_lines(stdout):
        stream.read(event)
    error: str | None = None
    failed = stream.failed
    if failed or exit_code != 0:
        detail = stream.errors[-1] if stream.errors else stderr_tail(stderr)
        error = f"codex failed (exit {exit_code}): {detail}".strip()
    elif stream.tool_failures:
        failed = True
        reasons = [why for why, _ in stream.tool_failures]
        more = f" (and {len(reasons) - 3} more)" if len(reasons) > 3 else ""
        logged = stderr_tail(stderr)  # Codex logs the tool's own error ("Failed to write file ...") there
        error = f"codex tool call failed: {'; '.join(reasons[:3])}{more}" + (f" [stderr: {logged}]" if logged else "")
    return RunnerResult(exit_code=exit_code if not failed or exit_code else 1, session_id=stream.thread_id,
                        text=stream.text, json=extract_json(stream.text), tokens=stream.tokens, error=error)


class _Stream:
    """What the JSONL events said so far: thread, last message, tokens, errors and unrepaired tool failures."""

    def __init__(self) -> None:
        self.thread_id: str | None = None
        self.text = ""
        self.tokens = 0
        self.errors: list[str] = []
        self.tool_failures: list[tuple[str, set[str]]] = []
        self.failed = False

    def read(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "thread.started":
            self.thread_id = event.get("thread_id") or self.thread_id
        elif kind == "item.completed":
            item = event.get("item") or {}
            if isinstance(item, dict):
                self._item(item)
        elif kind == "turn.completed":
            usage = event.get("usage") or {}
            self.tokens += int(usage.get("input_tokens") or 0) + int(usage.get("output_tokens") or 0)
        elif kind == "turn.failed":
            self._fail((event.get("error") or {}).get("message"))
        elif kind == "error":
            self._fail(event.get("message"))

    def _item(self, item: dict[str, Any]) -> None:
        if item.get("type") == "agent_message" and isinstance(item.get("text"), str):
            self.text = item["text"]
        if item.get("type") == "file_change" and item.get("status") == "completed":
            fixed = _changed_paths(item)
            self.tool_failures = [(why, paths) for why, paths in self.tool_failures if not paths or not paths <= fixed]
        reason = _item_failure(item)
        if reason is not None:
            paths = _changed_paths(item) if item.get("type") == "file_change" else set()
            self.tool_failures.append((reason, paths))

    def _fail(self, message: object) -> None:
        self.failed = True
        if message:
            self.errors.append(str(message))


class CodexRunner(CliRunner):
    """Codex in ``exec`` mode."""

    name = "codex"
    binary = "codex"
    default_endpoints = ("https://api.openai.com",)

    def command(self, binary: str, call: Invocation) -> Command:
        """``codex exec`` (or ``exec resume``) with JSONL output, the prompt on stdin."""
        codex_home = call.home / ".codex"
        write_private_file(call.home, codex_home / "config.toml", config_toml(call))
        # Inside Agent-Z's sandbox Codex's own (nested bubblewrap) cannot work; ours is the boundary.
        sandbox = call.option("AGENTZ_CODEX_SANDBOX",
                              "danger-full-access" if self.sandbox.enabled else "workspace-write")
        common = ["--json", "--skip-git-repo-check", "--disable", "unbounded_connection_retries"]
        if call.session_id:
            args = [binary, "exec", "resume", *common, "-c", f"sandbox_mode={_toml(sandbox)}", call.session_id, "-"]
        else:
            args = [binary, "exec", *common, "--sandbox", sandbox, "-"]
        env = {**common_home_env(call.home), "CODEX_HOME": str(codex_home)}
        if call.endpoint is not None:
            env[KEY_VARIABLE] = call.endpoint.api_key
        return Command(args, call.prompt, env)

    def parse(self, process: ProcessResult, call: Invocation) -> RunnerResult:
        """Read the JSONL events."""
        return parse_stream(process.stdout, process.stderr, process.exit_code)
