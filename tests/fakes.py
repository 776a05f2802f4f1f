"""Test doubles for things outside the module under test.

:class:`FakeGH` is a gidgethub-compatible client: canned answers keyed by URL (the
exact URL first, then the URL without its query string), every call recorded.
An answer that is an exception instance is raised. :class:`FakeGitHubApp` hands
out one FakeGH per installation, like the real App client factory.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gidgethub.abc import GitHubAPI

from agentz_app.domain.runner import LogSink, RunnerResult
from agentz_app.errors import GitHubError


@dataclass
class Call:
    method: str
    url: str
    data: Any = None


class GitHubDouble(GitHubAPI):
    """A gidgethub client whose subclasses answer ``getitem``, ``post`` and the rest themselves: no HTTP."""

    def __init__(self) -> None:
        super().__init__("agent-z-tests")

    async def _request(self, method: str, url: str, headers: Mapping[str, str],
                       body: bytes = b"") -> tuple[int, Mapping[str, str], bytes]:
        raise AssertionError(f"{type(self).__name__} has no answer for {method} {url}")

    async def sleep(self, seconds: float) -> None:
        """Rate-limit pauses take no time."""


@dataclass
class FakeGH(GitHubDouble):
    """Canned GitHub answers keyed by URL; records every request in ``calls``."""

    getitem_answers: dict[str, Any] = field(default_factory=dict)
    getiter_answers: dict[str, Any] = field(default_factory=dict)
    post_answers: dict[str, Any] = field(default_factory=dict)
    patch_answers: dict[str, Any] = field(default_factory=dict)
    delete_answers: dict[str, Any] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    @staticmethod
    def _lookup(answers: dict[str, Any], url: str, default: Any) -> Any:
        if url in answers:
            answer = answers[url]
        elif url.split("?", 1)[0] in answers:
            answer = answers[url.split("?", 1)[0]]
        elif default is _MISSING:
            raise GitHubError(404, f"no canned answer for {url}")
        else:
            answer = default
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def getitem(self, url: str, url_vars: Mapping[str, Any] | None = None, **_: Any) -> Any:
        self.calls.append(Call("GET", url))
        return self._lookup(self.getitem_answers, url, _MISSING)

    async def getiter(self, url: str, url_vars: Mapping[str, Any] | None = None, **_: Any) -> AsyncGenerator[Any, None]:
        self.calls.append(Call("GET", url))
        for item in self._lookup(self.getiter_answers, url, _MISSING):
            yield item

    async def post(self, url: str, url_vars: Mapping[str, Any] | None = None, *, data: Any = None, **_: Any) -> Any:
        self.calls.append(Call("POST", url, data))
        return self._lookup(self.post_answers, url, {})

    async def patch(self, url: str, url_vars: Mapping[str, Any] | None = None, *, data: Any = None, **_: Any) -> Any:
        self.calls.append(Call("PATCH", url, data))
        return self._lookup(self.patch_answers, url, {})

    async def put(self, url: str, url_vars: Mapping[str, Any] | None = None, *, data: Any = None, **_: Any) -> Any:
        self.calls.append(Call("PUT", url, data))
        return {}

    async def delete(self, url: str, url_vars: Mapping[str, Any] | None = None, **_: Any) -> Any:
        self.calls.append(Call("DELETE", url))
        return self._lookup(self.delete_answers, url, None)

    def writes(self, method: str | None = None) -> list[Call]:
        """Recorded non-GET requests, optionally of one method."""
        return [c for c in self.calls if c.method != "GET" and (method is None or c.method == method)]

    def requests_to(self, url_prefix: str) -> list[Call]:
        return [c for c in self.calls if c.url.startswith(url_prefix)]


_MISSING: Any = object()


@dataclass
class FakeGitHubApp:
    """The App client factory: ``client(installation_id)`` returns that installation's FakeGH."""

    clients: dict[int, FakeGH] = field(default_factory=dict)

    def client(self, installation_id: int) -> FakeGH:
        return self.clients.setdefault(installation_id, FakeGH())


class FakeRunner:
    """A runner honouring the runner contract whose answers are given by the test.

    ``answers`` are used in order (the last one repeats); each is a JSON-able value
    (returned as ``json``), a string (returned as ``text``) or a callable taking the
    prompt. By default it ranks every ``### #N:`` candidate in the prompt, best first.
    """

    name = "fake"

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.prompts: list[str] = []
        self.session_ids: list[str | None] = []

    @property
    def calls(self) -> int:
        return len(self.prompts)

    @staticmethod
    def rank_all(prompt: str) -> dict[str, Any]:
        numbers = [int(n) for n in re.findall(r"^### #(\d+):", prompt, re.MULTILINE)]
        return {"ranking": [{"number": n, "score": 90 - i, "reason": "useful"} for i, n in enumerate(numbers)]}

    async def run(
        self,
        role: str,
        prompt: str,
        workdir: Path,
        *,
        session_id: str | None = None,
        timeout: float,
        env: Mapping[str, str] | None = None,
        log: LogSink | None = None,
        read_only: Sequence[Path] = (),
    ) -> RunnerResult:
        self.prompts.append(prompt)
        self.session_ids.append(session_id)
        index = min(len(self.prompts), len(self.answers)) - 1
        answer = self.answers[index] if self.answers else self.rank_all
        if callable(answer):
            answer = answer(prompt)
        if isinstance(answer, str):
            return RunnerResult(exit_code=0, session_id="s-1", text=answer)
        return RunnerResult(exit_code=0, session_id="s-1", text=json.dumps(answer), json=answer)


class FakeClock:
    """A settable clock (epoch seconds) for code that takes a ``clock`` callable."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
