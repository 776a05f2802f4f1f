"""The fake model server over real HTTP: three APIs, scenario steps, tool calls, recording."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agentz_app.fakemodel import FakeModelServer, FileWrite, Scenario, ScenarioStep, issue_scenario
from tests.waiting import wait_for
from workers.runners.output import extract_json

ROLE = {"X-Agentz-Role": "developer"}


async def _post(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.post(url, json=body, headers=headers or {}) as response:
        text = await response.text()
        if response.content_type == "text/event-stream":
            events = [json.loads(line[6:]) for line in text.splitlines()
                      if line.startswith("data: ") and line != "data: [DONE]"]
            return response.status, events
        return response.status, json.loads(text)


def _scenario() -> Scenario:
    return Scenario(title="Greeting fix", steps=[
        ScenarioStep(role="developer", match="#1", writes=[FileWrite(path="src/hello.txt", content="hi\n")],
                     text="Done.", json_value={"ok": True}),
    ])


async def test_anthropic_stream_asks_for_a_write_then_answers_with_json() -> None:
    async with FakeModelServer(_scenario()) as server:
        url = f"{server.base_url}/v1/messages?beta=true"
        base = {"model": "m", "stream": True, "tools": [{"name": "Write"}, {"name": "Bash"}],
                "system": [{"type": "text", "text": "Primary working directory: /repo/work\nBe brief."}]}
        prompt = {"role": "user", "content": [{"type": "text", "text": "Fix issue #1"}]}
        status, events = await _post(url, {**base, "messages": [prompt]}, ROLE)
        assert status == 200
        tool = next(e["content_block"] for e in events if e["type"] == "content_block_start")
        arguments = json.loads(next(e["delta"]["partial_json"] for e in events if e["type"] == "content_block_delta"))
        assert tool["name"] == "Write"
        assert arguments == {"file_path": "/repo/work/src/hello.txt", "content": "hi\n"}
        assert events[-2]["delta"]["stop_reason"] == "tool_use"

        history = [prompt, {"role": "assistant", "content": [{"type": "tool_use", "id": tool["id"], "name": "Write",
                                                               "input": arguments}]},
                   {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool["id"], "content": "ok"}]}]
        status, events = await _post(url, {**base, "messages": history}, ROLE)
        text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
        assert extract_json(text) == {"ok": True}
        assert events[-2]["delta"]["stop_reason"] == "end_turn"
    assert [request.role for request in server.requests] == ["developer", "developer"]
    assert [request.turn.tool_results for request in server.requests] == [0, 1]


async def test_anthropic_without_stream_gets_a_whole_message_and_title_calls_get_the_title() -> None:
    async with FakeModelServer(_scenario()) as server:
        status, body = await _post(f"{server.base_url}/v1/messages",
                                   {"model": "m", "messages": [{"role": "user", "content": "Name this chat"}]})
    assert status == 200
    assert body["content"] == [{"type": "text", "text": "Greeting fix"}]


async def test_responses_api_uses_codex_exec_command_with_apply_patch() -> None:
    async with FakeModelServer(_scenario()) as server:
        url = f"{server.base_url}/v1/responses"
        prompt = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Fix issue #1"}]}
        body = {"model": "m", "stream": True, "tools": [{"type": "function", "name": "exec_command"}],
                "input": [prompt]}
        _, events = await _post(url, body, ROLE)
        call = next(e["item"] for e in events if e["type"] == "response.output_item.done")
        assert call["type"] == "function_call"
        assert call["name"] == "exec_command"
        command = json.loads(call["arguments"])["cmd"]
        assert "*** Add File: src/hello.txt\n+hi\n*** End Patch" in command
        assert events[-1]["type"] == "response.completed"

        body["input"] = [prompt, call, {"type": "function_call_output", "call_id": call["call_id"], "output": "ok"}]
        _, events = await _post(url, body, ROLE)
        message = next(e["item"] for e in events if e["type"] == "response.output_item.done")
        assert extract_json(message["content"][0]["text"]) == {"ok": True}
        assert events[-1]["response"]["usage"]["output_tokens"] > 0


async def test_chat_completions_answers_title_call_then_uses_opencode_write_tool() -> None:
    async with FakeModelServer(_scenario()) as server:
        url = f"{server.base_url}/v1/chat/completions"
        system = {"role": "system", "content": "Working directory: /w\n"}
        prompt = {"role": "user", "content": "Fix issue #1"}
        _, chunks = await _post(url, {"model": "m", "stream": True, "messages": [system, prompt]}, ROLE)
        assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == "Greeting fix"

        body = {"model": "m", "stream": True, "tools": [{"type": "function", "function": {"name": "write"}}],
                "messages": [system, prompt]}
        _, chunks = await _post(url, body, ROLE)
        calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks
                 if c["choices"] and "tool_calls" in c["choices"][0]["delta"]]
        assert calls[0]["function"]["name"] == "write"
        assert json.loads(calls[0]["function"]["arguments"]) == {"filePath": "/w/src/hello.txt", "content": "hi\n"}
        assert chunks[-1]["usage"]["total_tokens"] > 0

        body["messages"] = [system, prompt, {"role": "assistant", "tool_calls": [calls[0]]},
                            {"role": "tool", "tool_call_id": calls[0]["id"], "content": "ok"}]
        _, chunks = await _post(url, {**body, "stream": False}, ROLE)
        assert extract_json(chunks["choices"][0]["message"]["content"]) == {"ok": True}


async def test_issue_scenario_routes_roles_and_issues_and_counts_review_rounds() -> None:
    scenario = Scenario(steps=[
        *issue_scenario(1, plan={"steps": ["one"]}, files={"a.txt": "a"},
                        review=[{"verdict": "changes_requested"}, {"verdict": "approve"}]),
        *issue_scenario(10, plan={"steps": ["ten"]}, files={"b.txt": "b"}, review={"verdict": "approve"}),
    ])

    async def ask(server: FakeModelServer, role: str, text: str) -> Any:
        body = {"model": "m", "stream": False, "tools": [{"name": "Write"}],
                "messages": [{"role": "user", "content": text}]}
        _, reply = await _post(f"{server.base_url}/v1/messages", body, {"X-Agentz-Role": role})
        block = reply["content"][0]
        return block["input"]["file_path"] if block["type"] == "tool_use" else extract_json(block["text"])

    async with FakeModelServer(scenario) as server:
        assert await ask(server, "task_lead", "Plan issue #10") == {"steps": ["ten"]}
        assert await ask(server, "task_lead", "Plan issue #1") == {"steps": ["one"]}
        assert await ask(server, "developer", "Implement issue #1") == "a.txt"
        assert await ask(server, "reviewer", "Review issue #1") == {"verdict": "changes_requested"}
        assert await ask(server, "reviewer", "Review issue #10") == {"verdict": "approve"}
        assert await ask(server, "reviewer", "Review issue #1 again") == {"verdict": "approve"}


async def test_scripted_status_and_invalid_bodies_are_errors() -> None:
    scenario = Scenario(steps=[ScenarioStep(match="boom", status=503)])
    async with FakeModelServer(scenario) as server:
        body = {"model": "m", "tools": [{"name": "write"}], "messages": [{"role": "user", "content": "boom"}]}
        status, reply = await _post(f"{server.base_url}/v1/chat/completions", body)
        assert status == 503
        assert reply["error"]["type"] == "api_error"
        status, reply = await _post(f"{server.base_url}/v1/messages", {"model": "m"})
        assert status == 400
        assert "messages" in reply["error"]["message"]
    assert server.requests[0].status == 503


async def test_standalone_server_serves_a_scenario_file(tmp_path: Path) -> None:
    scenario_file = tmp_path / "scenario.json"
    scenario_file.write_text(json.dumps({"steps": [{"match": "ping", "text": "pong"}]}))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "agentz_app.fakemodel", "--port", str(port),
                                                "--scenario", str(scenario_file), stdout=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert f"127.0.0.1:{port}" in line.decode()
        body = {"model": "m", "tools": [{"name": "Write"}], "messages": [{"role": "user", "content": "ping"}]}

        async def answer() -> tuple[int, Any] | None:
            try:
                return await _post(f"http://127.0.0.1:{port}/v1/messages", body)
            except aiohttp.ClientConnectionError:
                return None  # it prints its address just before it listens

        status, reply = await wait_for(answer, timeout=10, what=f"the fake model answering on port {port}")
        assert status == 200
        assert reply["content"][0]["text"] == "pong"
    finally:
        proc.terminate()
        await proc.wait()


def test_scenario_with_a_bad_regex_is_rejected() -> None:
    with pytest.raises(ValueError, match="invalid regular expression"):
        Scenario.from_json('{"steps": [{"regex": "("}]}')


async def test_a_write_is_preceded_by_a_read_when_the_cli_offers_one() -> None:
    scenario = Scenario(steps=[ScenarioStep(role="developer", writes=[{"path": "a.py", "content": "x = 1\n"}],
                                            text="done")])
    tools = [{"name": "Read"}, {"name": "Write"}]
    prompt = {"role": "user", "content": "<env>Working directory: /w</env> implement"}
    async with FakeModelServer(scenario) as server:
        url = f"{server.base_url}/v1/messages"
        headers = {"X-Agentz-Role": "developer"}
        history: list[dict[str, Any]] = [prompt]
        names = []
        for _ in range(3):
            _, reply = await _post(url, {"model": "m", "stream": False, "tools": tools, "messages": history}, headers)
            block = reply["content"][0]
            if block["type"] != "tool_use":
                break
            names.append((block["name"], block["input"]))
            history += [{"role": "assistant", "content": [block]},
                        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block["id"],
                                                      "content": "ok"}]}]
    assert names == [("Read", {"file_path": "/w/a.py"}), ("Write", {"file_path": "/w/a.py", "content": "x = 1\n"})]
    assert block["text"] == "done"
