"""Wire formats of the three model APIs, as pure functions.

``read_*`` turns a request body into a :class:`Turn` (what was asked, how many
tool results already came back); ``*_events`` renders a :class:`Reply` as the
server-sent events that API streams.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

Event = tuple[str | None, dict[str, Any]]

USAGE_INPUT_TOKENS = 100
USAGE_OUTPUT_TOKENS = 20

_WORKDIR_PATTERNS = (
    re.compile(r"<cwd>([^<\n]+)</cwd>"),
    re.compile(r"(?:primary )?working directory:\s*(/[^\s\"'<>\\]+)", re.I),
)


@dataclass(frozen=True)
class Turn:
    """What a model request asks, independent of the wire format."""

    prompt: str
    tool_results: int
    has_tools: bool
    tool_names: frozenset[str]
    context: str
    model: str
    stream: bool

    @property
    def is_new(self) -> bool:
        """The request starts a turn (no tool result after the prompt yet)."""
        return self.tool_results == 0


@dataclass(frozen=True)
class ToolCall:
    name: str
    arguments: dict[str, Any]
    call_id: str


@dataclass(frozen=True)
class Reply:
    text: str = ""
    tool_call: ToolCall | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def find_workdir(context: str) -> str | None:
    """The agent's working directory as its CLI describes it in the request, if any."""
    for pattern in _WORKDIR_PATTERNS:
        found = pattern.search(context)
        if found:
            return found.group(1).strip()
    return None


def _texts(content: Any, kinds: tuple[str, ...]) -> list[str]:
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        return []
    return [str(block.get("text", "")) for block in content if isinstance(block, dict) and block.get("type") in kinds]


def _tool_names(tools: Any) -> frozenset[str]:
    names: set[str] = set()
    for tool in tools if isinstance(tools, list) else []:
        if isinstance(tool, dict):
            name = tool.get("name") or (tool.get("function") or {}).get("name")
            if isinstance(name, str):
                names.add(name)
    return frozenset(names)


def _require_list(body: dict[str, Any], key: str) -> list[Any]:
    value = body.get(key)
    if not isinstance(value, list):
        raise ValueError(f"request body needs a '{key}' list")
    return value


# Anthropic Messages ----------------------------------------------------------


def read_anthropic(body: dict[str, Any]) -> Turn:
    """Normalise a ``POST /v1/messages`` body."""
    messages = _require_list(body, "messages")
    prompt, results = "", 0
    for message in messages:
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        blocks = content if isinstance(content, list) else []
        tool_results = sum(1 for b in blocks if isinstance(b, dict) and b.get("type") == "tool_result")
        if tool_results:
            results += tool_results
        else:
            prompt, results = "\n".join(_texts(content, ("text",))), 0
    return Turn(prompt, results, bool(body.get("tools")), _tool_names(body.get("tools")),
                json.dumps(body.get("system", "")) + json.dumps(messages), str(body.get("model", "")),
                bool(body.get("stream")))


def anthropic_message(reply: Reply, model: str, message_id: str) -> dict[str, Any]:
    """A complete (non-streamed) Messages API response."""
    content: list[dict[str, Any]] = []
    if reply.text:
        content.append({"type": "text", "text": reply.text})
    if reply.tool_call:
        content.append({"type": "tool_use", "id": reply.tool_call.call_id, "name": reply.tool_call.name,
                        "input": reply.tool_call.arguments})
    return {"id": message_id, "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": "tool_use" if reply.tool_call else "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": USAGE_INPUT_TOKENS, "output_tokens": USAGE_OUTPUT_TOKENS}}


def anthropic_events(reply: Reply, model: str, message_id: str) -> list[Event]:
    """The SSE events streaming ``reply`` in the Messages API."""
    start = anthropic_message(Reply(), model, message_id)
    start.update(stop_reason=None, usage={"input_tokens": USAGE_INPUT_TOKENS, "output_tokens": 1})
    events: list[Event] = [("message_start", {"type": "message_start", "message": start})]
    index = 0
    if reply.text:
        events += [
            ("content_block_start", {"type": "content_block_start", "index": index,
                                     "content_block": {"type": "text", "text": ""}}),
            ("content_block_delta", {"type": "content_block_delta", "index": index,
                                     "delta": {"type": "text_delta", "text": reply.text}}),
            ("content_block_stop", {"type": "content_block_stop", "index": index}),
        ]
        index += 1
    if reply.tool_call:
        call = reply.tool_call
        events += [
            ("content_block_start", {"type": "content_block_start", "index": index, "content_block": {
                "type": "tool_use", "id": call.call_id, "name": call.name, "input": {}}}),
            ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {
                "type": "input_json_delta", "partial_json": json.dumps(call.arguments)}}),
            ("content_block_stop", {"type": "content_block_stop", "index": index}),
        ]
    events += [
        ("message_delta", {"type": "message_delta",
                           "delta": {"stop_reason": "tool_use" if reply.tool_call else "end_turn",
                                     "stop_sequence": None},
                           "usage": {"output_tokens": USAGE_OUTPUT_TOKENS}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    return events


# OpenAI Responses --------------------------------------------------------------


def read_responses(body: dict[str, Any]) -> Turn:
    """Normalise a ``POST /v1/responses`` body."""
    raw = body.get("input")
    if isinstance(raw, str):
        items: list[Any] = [{"type": "message", "role": "user", "content": raw}]
    else:
        items = _require_list(body, "input")
    prompt, results = "", 0
    for item in items:
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        if kind == "message" and item.get("role") == "user":
            prompt, results = "\n".join(_texts(item.get("content"), ("input_text", "text"))), 0
        elif kind in ("function_call_output", "custom_tool_call_output"):
            results += 1
    return Turn(prompt, results, bool(body.get("tools")), _tool_names(body.get("tools")),
                json.dumps(body.get("instructions", "")) + json.dumps(items), str(body.get("model", "")),
                body.get("stream") is not False)


def responses_events(reply: Reply, model: str, response_id: str) -> list[Event]:
    """The SSE events streaming ``reply`` in the Responses API."""
    output: list[dict[str, Any]] = []
    if reply.text:
        output.append({"type": "message", "id": f"msg_{response_id}", "role": "assistant", "status": "completed",
                       "content": [{"type": "output_text", "text": reply.text, "annotations": []}]})
    if reply.tool_call:
        output.append({"type": "function_call", "id": f"fc_{response_id}", "call_id": reply.tool_call.call_id,
                       "name": reply.tool_call.name, "arguments": json.dumps(reply.tool_call.arguments),
                       "status": "completed"})
    base = {"id": response_id, "object": "response", "created_at": 0, "model": model}
    events: list[Event] = [("response.created", {"type": "response.created",
                                                 "response": {**base, "status": "in_progress", "output": []}})]
    for index, item in enumerate(output):
        added = {**item, "status": "in_progress"}
        if item["type"] == "message":
            added["content"] = []
        events.append(("response.output_item.added",
                       {"type": "response.output_item.added", "output_index": index, "item": added}))
        if item["type"] == "message":
            events.append(("response.output_text.delta", {
                "type": "response.output_text.delta", "item_id": item["id"], "output_index": index,
                "content_index": 0, "delta": reply.text}))
        events.append(("response.output_item.done",
                       {"type": "response.output_item.done", "output_index": index, "item": item}))
    usage = {"input_tokens": USAGE_INPUT_TOKENS, "input_tokens_details": {"cached_tokens": 0},
             "output_tokens": USAGE_OUTPUT_TOKENS, "output_tokens_details": {"reasoning_tokens": 0},
             "total_tokens": USAGE_INPUT_TOKENS + USAGE_OUTPUT_TOKENS}
    events.append(("response.completed", {"type": "response.completed",
                                          "response": {**base, "status": "completed", "output": output,
                                                       "usage": usage}}))
    return events


# OpenAI Chat Completions ----------------------------------------------------------


def read_chat(body: dict[str, Any]) -> Turn:
    """Normalise a ``POST /v1/chat/completions`` body."""
    messages = _require_list(body, "messages")
    prompt, results = "", 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        if message.get("role") == "user":
            prompt, results = "\n".join(_texts(message.get("content"), ("text",))), 0
        elif message.get("role") == "tool":
            results += 1
    return Turn(prompt, results, bool(body.get("tools")), _tool_names(body.get("tools")), json.dumps(messages),
                str(body.get("model", "")), bool(body.get("stream")))


def chat_completion(reply: Reply, model: str, completion_id: str) -> dict[str, Any]:
    """A complete (non-streamed) Chat Completions response."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    if reply.tool_call:
        message["tool_calls"] = [{"id": reply.tool_call.call_id, "type": "function", "function": {
            "name": reply.tool_call.name, "arguments": json.dumps(reply.tool_call.arguments)}}]
    return {"id": completion_id, "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": message,
                         "finish_reason": "tool_calls" if reply.tool_call else "stop"}],
            "usage": _chat_usage()}


def _chat_usage() -> dict[str, int]:
    return {"prompt_tokens": USAGE_INPUT_TOKENS, "completion_tokens": USAGE_OUTPUT_TOKENS,
            "total_tokens": USAGE_INPUT_TOKENS + USAGE_OUTPUT_TOKENS}


def chat_events(reply: Reply, model: str, completion_id: str) -> list[Event]:
    """The SSE chunks streaming ``reply`` in the Chat Completions API."""
    base = {"id": completion_id, "object": "chat.completion.chunk", "created": 0, "model": model}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> Event:
        return None, {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    events = [chunk({"role": "assistant", "content": ""})]
    if reply.text:
        events.append(chunk({"content": reply.text}))
    if reply.tool_call:
        events.append(chunk({"tool_calls": [{"index": 0, "id": reply.tool_call.call_id, "type": "function",
                                             "function": {"name": reply.tool_call.name,
                                                          "arguments": json.dumps(reply.tool_call.arguments)}}]}))
    events.append(chunk({}, "tool_calls" if reply.tool_call else "stop"))
    events.append((None, {**base, "choices": [], "usage": _chat_usage()}))
    return events


# File-writing tool calls per CLI ---------------------------------------------------


def _absolute(path: str, workdir: str | None) -> str:
    if path.startswith("/") or workdir is None:
        return path
    return workdir.rstrip("/") + "/" + path


def apply_patch_command(path: str, content: str) -> str:
    """A shell command running Codex's ``apply_patch`` to create (or overwrite) ``path``."""
    lines = content.splitlines() or [""]
    patch = "\n".join(["*** Begin Patch", f"*** Add File: {path}", *("+" + line for line in lines), "*** End Patch"])
    return f"apply_patch <<'AGENTZ_PATCH'\n{patch}\nAGENTZ_PATCH\n"


# The read tool Claude Code and OpenCode insist on before they overwrite an existing file.
_READ_TOOLS = {"anthropic": ("Read", "file_path"), "chat": ("read", "filePath")}


def can_read(api: str, turn: Turn) -> bool:
    """True when the CLI behind ``api`` offers the read tool its writes depend on."""
    tool = _READ_TOOLS.get(api)
    return tool is not None and tool[0] in turn.tool_names


def read_call(api: str, turn: Turn, path: str, call_id: str) -> ToolCall:
    """The tool call that makes the CLI behind ``api`` read ``path`` before overwriting it."""
    name, argument = _READ_TOOLS[api]
    return ToolCall(name, {argument: _absolute(path, find_workdir(turn.context))}, call_id)


def write_call(api: str, turn: Turn, path: str, content: str, call_id: str) -> ToolCall:
    """The tool call that makes the CLI behind ``api`` write ``content`` to ``path``."""
    workdir = find_workdir(turn.context)
    if api == "anthropic" and "Write" in turn.tool_names:
        return ToolCall("Write", {"file_path": _absolute(path, workdir), "content": content}, call_id)
    if api == "chat" and "write" in turn.tool_names:
        return ToolCall("write", {"filePath": _absolute(path, workdir), "content": content}, call_id)
    if api == "responses" and "exec_command" in turn.tool_names:
        return ToolCall("exec_command", {"cmd": apply_patch_command(path, content)}, call_id)
    if api == "responses" and "shell" in turn.tool_names:
        return ToolCall("shell", {"command": ["bash", "-lc", f"cat > {shlex.quote(path)} <<'AGENTZ_EOF'\n"
                                              f"{content}\nAGENTZ_EOF"]}, call_id)
    raise LookupError(f"no file-writing tool among {sorted(turn.tool_names)} for the {api} API")
