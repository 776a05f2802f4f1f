"""The fake model server: an aiohttp app speaking three model APIs from a scenario.

``POST /v1/messages`` (Anthropic Messages), ``POST /v1/responses`` (OpenAI Responses)
and ``POST /v1/chat/completions`` (Chat Completions), streamed as SSE or answered
whole. Every request is recorded in :attr:`FakeModelServer.requests`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from agentz_app.fakemodel.protocols import (
    Event,
    Reply,
    Turn,
    anthropic_events,
    anthropic_message,
    can_read,
    chat_completion,
    chat_events,
    read_anthropic,
    read_call,
    read_chat,
    read_responses,
    responses_events,
    write_call,
)
from agentz_app.fakemodel.scenario import ROLE_HEADER, Scenario


@dataclass
class RecordedRequest:
    """One request the fake model received and how it answered."""

    api: str
    path: str
    role: str | None
    headers: dict[str, str]
    body: dict[str, Any]
    turn: Turn
    reply: Reply | None = None
    status: int = 200


@dataclass
class ModelState:
    """Mutable state of one server: the scenario, turns seen and the request log."""

    scenario: Scenario
    requests: list[RecordedRequest] = field(default_factory=list)
    turns: list[tuple[str | None, str]] = field(default_factory=list)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def next_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self.ids):06d}"


_STATE = web.AppKey("fakemodel_state", ModelState)
_READERS: dict[str, Callable[[dict[str, Any]], Turn]] = {
    "anthropic": read_anthropic,
    "responses": read_responses,
    "chat": read_chat,
}


def _answer(state: ModelState, api: str, turn: Turn, role: str | None) -> tuple[Reply, float, int | None]:
    if not turn.has_tools:  # title and summary calls
        return Reply(text=state.scenario.title), 0.0, None
    if turn.is_new:
        state.turns.append((role, turn.prompt))
    step = state.scenario.pick(role, turn.prompt, state.turns)
    if step is None:
        return Reply(text=state.scenario.fallback_text), 0.0, None
    # Claude Code and OpenCode refuse to overwrite a file the agent has not read: read, then write.
    calls_per_write = 2 if can_read(api, turn) else 1
    index, phase = divmod(turn.tool_results, calls_per_write)
    if index < len(step.writes):
        write = step.writes[index]
        if calls_per_write == 2 and phase == 0:
            call = read_call(api, turn, write.path, state.next_id("call"))
        else:
            call = write_call(api, turn, write.path, write.content, state.next_id("call"))
        return Reply(tool_call=call), step.stall, step.status
    return Reply(text=step.final_text()), step.stall, step.status


async def _sse(request: web.Request, events: list[Event]) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    for name, data in events:
        prefix = f"event: {name}\n" if name else ""
        await response.write(f"{prefix}data: {json.dumps(data)}\n\n".encode())
    if all(name is None for name, _ in events):
        await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


def _error(api: str, status: int, message: str) -> web.Response:
    kind = "api_error" if status >= 500 else "invalid_request_error"
    if api == "anthropic":
        body: dict[str, Any] = {"type": "error", "error": {"type": kind, "message": message}}
    else:
        body = {"error": {"message": message, "type": kind, "code": None}}
    return web.json_response(body, status=status)


def _handler(api: str) -> Callable[[web.Request], Any]:
    async def handle(request: web.Request) -> web.StreamResponse:
        state = request.app[_STATE]
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("request body must be a JSON object")
            turn = _READERS[api](body)
        except ValueError as exc:
            return _error(api, 400, f"invalid request: {exc}")
        role = request.headers.get(ROLE_HEADER)
        record = RecordedRequest(api, request.path, role, dict(request.headers), body, turn)
        state.requests.append(record)
        try:
            reply, stall, status = _answer(state, api, turn, role)
        except LookupError as exc:
            record.status = 400
            return _error(api, 400, str(exc))
        if stall:
            await asyncio.sleep(stall)
        if status is not None:
            record.status = status
            return _error(api, status, f"scripted {status} answer")
        record.reply = reply
        return await _send_reply(request, state, api, turn, reply)

    return handle


async def _send_reply(request: web.Request, state: ModelState, api: str, turn: Turn,
                      reply: Reply) -> web.StreamResponse:
    """Answer in ``api``'s format: one JSON message, or server-sent events for a streamed turn."""
    if api == "anthropic":
        message_id = state.next_id("msg")
        if not turn.stream:
            return web.json_response(anthropic_message(reply, turn.model, message_id))
        return await _sse(request, anthropic_events(reply, turn.model, message_id))
    if api == "chat":
        completion_id = state.next_id("chatcmpl")
        if not turn.stream:
            return web.json_response(chat_completion(reply, turn.model, completion_id))
        return await _sse(request, chat_events(reply, turn.model, completion_id))
    return await _sse(request, responses_events(reply, turn.model, state.next_id("resp")))


async def _models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": "fake-model", "object": "model"}]})


def create_app(scenario: Scenario) -> web.Application:
    """The fake model's aiohttp application for ``scenario``."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[_STATE] = ModelState(scenario)
    app.router.add_post("/v1/messages", _handler("anthropic"))
    app.router.add_post("/v1/responses", _handler("responses"))
    app.router.add_post("/v1/chat/completions", _handler("chat"))
    app.router.add_get("/v1/models", _models)
    return app


class FakeModelServer:
    """Run the fake model on 127.0.0.1; use as ``async with FakeModelServer(scenario) as server``."""

    def __init__(self, scenario: Scenario | None = None, *, port: int = 0) -> None:
        self.app = create_app(scenario or Scenario())
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def state(self) -> ModelState:
        return self.app[_STATE]

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first."""
        return self.state.requests

    @property
    def scenario(self) -> Scenario:
        return self.state.scenario

    @scenario.setter
    def scenario(self, scenario: Scenario) -> None:
        self.state.scenario = scenario

    @property
    def base_url(self) -> str:
        """The server's root URL (the APIs live under ``/v1``)."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> str:
        """Start listening; return the base URL."""
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        return self.base_url

    async def stop(self) -> None:
        """Stop listening and drop open connections."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeModelServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
