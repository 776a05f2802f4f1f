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

from workers.procs import ProcessResult
from workers.runners.base import RunnerResult
from workers.runners.cli import ROLE_HEADER, CliRunner, Command, Invocation, common_home_env, stderr_tail
from workers.runners.output import extract_json, json_lines

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


def parse_stream(stdout: str, stderr: str, exit_code: int) -> RunnerResult:
    """Parse ``codex exec --json`` JSONL events into a result."""
    thread_id: str | None = None
    text = ""
    tokens = 0
    errors: list[str] = []
    failed = False
    for event in json_lines(stdout):
        kind = event.get("type")
        if kind == "thread.started":
            thread_id = event.get("thread_id") or thread_id
        elif kind == "item.completed":
            item = event.get("item") or {}
            if item.get("type") == "agent_message" and isinstance(item.get("text"), str):
                text = item["text"]
        elif kind == "turn.completed":
            usage = event.get("usage") or {}
            tokens += int(usage.get("input_tokens") or 0) + int(usage.get("output_tokens") or 0)
        elif kind == "turn.failed":
            failed = True
            message = (event.get("error") or {}).get("message")
            if message:
                errors.append(str(message))
        elif kind == "error":
            failed = True
            if event.get("message"):
                errors.append(str(event["message"]))
    error: str | None = None
    if failed or exit_code != 0:
        detail = errors[-1] if errors else stderr_tail(stderr)
        error = f"codex failed (exit {exit_code}): {detail}".strip()
    return RunnerResult(exit_code=exit_code if not failed or exit_code else 1, session_id=thread_id, text=text,
                        json=extract_json(text), tokens=tokens, error=error)


class CodexRunner(CliRunner):
    """Codex in ``exec`` mode."""

    name = "codex"
    binary = "codex"
    default_endpoints = ("https://api.openai.com",)

    def command(self, binary: str, call: Invocation) -> Command:
        """``codex exec`` (or ``exec resume``) with JSONL output, the prompt on stdin."""
        codex_home = call.home / ".codex"
        codex_home.mkdir(parents=True, exist_ok=True)
        (codex_home / "config.toml").write_text(config_toml(call))
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
