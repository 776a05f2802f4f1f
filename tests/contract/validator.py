"""Validate fakehub's traffic against GitHub's published API description (``github-spec.json``).

``GitHubContract`` answers questions about the vendored description: which operation a
request is, whether its query and body are valid, whether a response or webhook payload
matches the documented schema. ``ContractRecorder`` is a fakehub traffic observer that
records every violation; the shared ``fakehub`` fixture fails a test that leaves any.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from agentz_app.fakehub.contract import Exchange
from agentz_app.github.events import EVENT_MODELS, BadPayload, parse_event

SPEC_PATH = Path(__file__).with_name("github-spec.json")
SPEC_URI = "urn:agentz:github-spec"


def _pointer(*parts: str) -> str:
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


@dataclass(frozen=True)
class Operation:
    """One documented REST operation."""

    key: str
    """``METHOD /template``."""
    method: str
    template: str
    pattern: re.Pattern[str]
    spec: Mapping[str, Any]

    @property
    def query_parameters(self) -> Mapping[str, Any]:
        """The documented query parameters by name."""
        params: Mapping[str, Any] = self.spec["parameters"]["query"]
        return params


class GitHubContract:
    """The vendored description with cached validators."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = spec
        self.registry: Registry[Any] = Registry().with_resource(SPEC_URI, DRAFT202012.create_resource(spec))
        self.operations = sorted((self._operation(key, value) for key, value in spec["operations"].items()),
                                 key=lambda op: (-op.template.count("/"), op.template.count("{"), op.template))

    @classmethod
    @functools.cache
    def load(cls, path: Path = SPEC_PATH) -> GitHubContract:
        """The description at ``path`` (loaded once per process)."""
        return cls(json.loads(path.read_text("utf-8")))

    @staticmethod
    def _operation(key: str, spec: Mapping[str, Any]) -> Operation:
        method, template = key.split(" ", 1)
        regex = "".join(f"(?P<{part[1:-1]}>[^/]+)" if part.startswith("{") else re.escape(part)
                        for part in re.split(r"(\{[^}]+\})", template))
        return Operation(key, method, template, re.compile(regex + "/?$"), spec)

    def match(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        """The documented operation a request is, with its path parameters (None if undocumented)."""
        for op in self.operations:
            if op.method != method:
                continue
            found = op.pattern.match(path)
            if found:
                return op, {k: unquote(v) for k, v in found.groupdict().items()}
        return None

    @functools.cache  # noqa: B019 - one contract per process
    def _validator(self, pointer: str) -> Draft202012Validator:
        return Draft202012Validator({"$ref": f"{SPEC_URI}#{pointer}"}, registry=self.registry)

    def errors(self, pointer: str, instance: Any) -> list[str]:
        """Schema violations of ``instance`` against the schema at ``pointer`` (JSON pointer into the spec)."""
        found = sorted(self._validator(pointer).iter_errors(instance), key=lambda e: list(e.absolute_path))
        out = []
        for error in found[:5]:
            while error.context:  # anyOf/oneOf: say why the closest alternative failed
                error = best_match(error.context)
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            out.append(f"{where}: {_short(error.message)}")
        return out

    def request_errors(self, method: str, path: str, query: Mapping[str, str], body: bytes) -> list[str]:
        """Why a request is not what GitHub documents (empty when it is)."""
        matched = self.match(method, path)
        if matched is None:
            return [f"{method} {path}: no such operation in GitHub's description"]
        op, _ = matched
        problems = []
        for name, value in query.items():
            param = op.query_parameters.get(name)
            if param is None:
                problems.append(f"{op.key}: unknown query parameter {name!r}")
                continue
            pointer = _pointer("operations", op.key, "parameters", "query", name, "schema")
            problems += [f"{op.key}: query {name}={value!r}: {e}"
                         for e in self.errors(pointer, _coerce(value, param["schema"]))]
        request_body = op.spec.get("requestBody")
        raw = body.strip()
        if request_body is None:
            if raw and raw not in (b"{}", b"null"):
                problems.append(f"{op.key}: takes no request body")
            return problems
        if not raw:
            if request_body["required"]:
                problems.append(f"{op.key}: request body required")
            return problems
        try:
            data = json.loads(raw)
        except ValueError:
            return [*problems, f"{op.key}: request body is not JSON"]
        pointer = _pointer("operations", op.key, "requestBody", "schema")
        problems += [f"{op.key}: body {e}" for e in self.errors(pointer, data)]
        return problems

    def response_errors(self, method: str, path: str, status: int, body: bytes | None) -> list[str]:
        """Why a response is not what GitHub documents for that operation and status."""
        matched = self.match(method, path)
        if matched is None:
            return []
        op, _ = matched
        responses: Mapping[str, Any] = op.spec["responses"]
        key = str(status)
        if key not in responses:
            if 200 <= status < 300:
                return [f"{op.key}: answered {status}, GitHub documents {sorted(responses)}"]
            return []
        if responses[key] is None or body is None:
            return []
        try:
            data = json.loads(body)
        except ValueError:
            return [f"{op.key} {status}: response is not JSON"]
        pointer = _pointer("operations", op.key, "responses", key)
        return [f"{op.key} {status}: {e}" for e in self.errors(pointer, data)]

    def webhook_key(self, event: str, payload: Mapping[str, Any]) -> str | None:
        """The documented ``event.action`` (or ``event``) a payload is, None if undocumented."""
        webhooks: Mapping[str, Any] = self.spec["webhooks"]
        action = payload.get("action")
        for key in (f"{event}.{action}", event):
            if key in webhooks:
                return key
        return None

    def webhook_errors(self, event: str, payload: Mapping[str, Any]) -> list[str]:
        """Why a webhook payload is not what GitHub documents for its event and action."""
        key = self.webhook_key(event, payload)
        if key is None:
            return [f"webhook {event}.{payload.get('action')}: not in GitHub's description (or not vendored)"]
        pointer = _pointer("webhooks", key, "schema")
        return [f"webhook {key}: {e}" for e in self.errors(pointer, payload)]

    def webhook_permission(self, event: str) -> str | None:
        """``name:level`` of the permission GitHub documents for receiving ``event``."""
        for key, value in self.spec["webhooks"].items():
            if key.split(".")[0] == event:
                permission: str | None = value["permission"]
                return permission
        return None

    def operation_keys(self) -> Iterator[str]:
        """Every vendored operation as ``METHOD /template``."""
        return iter(self.spec["operations"])


def _coerce(value: str, schema: Mapping[str, Any]) -> Any:
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if "integer" in kinds:
        try:
            return int(value)
        except ValueError:
            return value
    if "boolean" in kinds and value in ("true", "false"):
        return value == "true"
    return value


def _short(message: str, limit: int = 300) -> str:
    return message if len(message) <= limit else message[:limit] + "…"


@dataclass
class ContractRecorder:
    """A fakehub traffic observer recording every way the traffic departs from GitHub's description.

    A request that breaks the description counts only when fakehub accepted it (GitHub would
    not have): a 4xx for it is the behaviour we want. Every documented response status and
    every webhook payload is checked against its schema.
    """

    contract: GitHubContract
    violations: list[str] = field(default_factory=list)
    seen_operations: set[str] = field(default_factory=set)

    def exchange(self, exchange: Exchange) -> None:
        matched = self.contract.match(exchange.method, exchange.path)
        if matched is not None:
            self.seen_operations.add(matched[0].key)
        if exchange.status < 400:
            self.violations += self.contract.request_errors(exchange.method, exchange.path, exchange.query,
                                                            exchange.body)
        self.violations += self.contract.response_errors(exchange.method, exchange.path, exchange.status,
                                                         exchange.response_body)

    def webhook(self, event: str, payload: Mapping[str, Any]) -> None:
        self.violations += self.contract.webhook_errors(event, payload)
        if event in EVENT_MODELS:  # Agent-Z's own models must read every payload GitHub's schema allows
            try:
                parse_event(event, payload)
            except BadPayload as exc:
                self.violations.append(f"webhook {event}.{payload.get('action')}: Agent-Z cannot read it: {exc}")

    def report(self) -> str:
        """The violations, one a line, deduplicated."""
        return "\n".join(dict.fromkeys(self.violations))
