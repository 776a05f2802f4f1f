"""Agent-Z's webhook models against GitHub's published webhook schemas (``github-spec.json``).

For every event model and every documented action of its event, each field the model
reads must exist in GitHub's schema with a compatible type: every type GitHub may send
(``null`` included) must parse, and a field our model requires must be required and
non-null in GitHub's. Real sample payloads parse, and random junk never raises anything
but :class:`BadPayload`.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from agentz_app.github.events import (
    EVENT_MODELS,
    BadPayload,
    CheckRun,
    CheckSuite,
    CommitStatus,
    IssuesEvent,
    Label,
    parse_event,
    parse_payload,
)
from tests.contract.validator import ContractRecorder, GitHubContract

FIXTURES = Path(__file__).parent.parent / "fixtures" / "webhooks"
JSON_TYPES = {str: {"string"}, bool: {"boolean"}, int: {"integer"}, float: {"number", "integer"},
              type(None): {"null"}}


# Reading GitHub's schemas ------------------------------------------------------------


def _resolve(spec: Mapping[str, Any], schema: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in schema:
        schema = spec["definitions"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _merged(spec: Mapping[str, Any], schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """An ``allOf`` schema as one object schema (properties and required lists joined)."""
    parts = [_resolve(spec, part) for part in schema["allOf"]]
    parts = [_merged(spec, part) if "allOf" in part else part for part in parts]
    merged: dict[str, Any] = {key: value for key, value in schema.items() if key != "allOf"}
    merged["properties"] = {name: prop for part in parts for name, prop in part.get("properties", {}).items()}
    merged["required"] = [name for part in parts for name in part.get("required", ())]
    merged.setdefault("type", next((part["type"] for part in parts if "type" in part), "object"))
    return merged


def _alternatives(spec: Mapping[str, Any], schema: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The concrete schemas a value may follow (anyOf/oneOf flattened, allOf merged, refs resolved)."""
    schema = _resolve(spec, schema)
    if "allOf" in schema:
        schema = _merged(spec, schema)
    branches = schema.get("anyOf") or schema.get("oneOf")
    if not branches:
        return [schema]
    return [alt for branch in branches for alt in _alternatives(spec, branch)]


def _types(spec: Mapping[str, Any], schema: Mapping[str, Any]) -> set[str]:
    """Every JSON type GitHub documents for a value (empty: unconstrained)."""
    found: set[str] = set()
    for alt in _alternatives(spec, schema):
        kind = alt.get("type")
        found |= set(kind) if isinstance(kind, list) else {kind} if isinstance(kind, str) else set()
        if None in alt.get("enum", ()):
            found.add("null")
        if not kind and "properties" in alt:
            found.add("object")
    return found


def _property(spec: Mapping[str, Any], schema: Mapping[str, Any], name: str) -> tuple[list[Mapping[str, Any]], bool]:
    """The schemas of property ``name`` across the object alternatives, and whether all of them require it."""
    objects = [alt for alt in _alternatives(spec, schema) if "properties" in alt]
    found = [alt["properties"][name] for alt in objects if name in alt.get("properties", {})]
    required = bool(objects) and all(name in alt.get("required", ()) for alt in objects)
    return found, required


# Reading our models ------------------------------------------------------------------


def _accepted(annotation: Any) -> tuple[set[str], list[type[BaseModel]]]:
    """The JSON types a field annotation accepts, and the models it nests (objects or array items)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _accepted(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        kinds: set[str] = set()
        nested: list[type[BaseModel]] = []
        for arg in typing.get_args(annotation):
            arg_kinds, arg_nested = _accepted(arg)
            kinds |= arg_kinds
            nested += arg_nested
        return kinds, nested
    if origin in (tuple, list):
        return {"array"}, _accepted(typing.get_args(annotation)[0])[1]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {"object"}, [annotation]
    return JSON_TYPES[annotation], []


def _problems(spec: Mapping[str, Any], model: type[BaseModel], schemas: list[Mapping[str, Any]],
              where: str) -> Iterator[str]:
    """Why ``model`` cannot read what ``schemas`` (one per documented action) allow; empty when it can.

    An optional field may be absent from some actions (``label`` is only in ``labeled``),
    not from all of them.
    """
    for name, field in model.model_fields.items():
        key = field.alias or name
        path = f"{where}.{key}"
        accepted, nested = _accepted(field.annotation)
        everywhere = [_property(spec, schema, key) for schema in schemas]
        found = [prop for props, _ in everywhere for prop in props]
        if not found:
            yield f"{path}: not in GitHub's schema"
            continue
        if field.is_required() and not all(props and required for props, required in everywhere):
            yield f"{path}: required by the model but optional in GitHub's schema"
        for prop in found:
            documented = _types(spec, prop)
            if documented - accepted:
                yield f"{path}: GitHub sends {sorted(documented)}, the model accepts {sorted(accepted)}"
            if field.is_required() and "null" in documented:
                yield f"{path}: required by the model but nullable in GitHub's schema"
        for inner in nested:
            targets = [target for prop in found for target in _objects_of(spec, prop)]
            yield from _problems(spec, inner, targets, path)


def _objects_of(spec: Mapping[str, Any], schema: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The object schemas a value holds: itself, or its array items."""
    if "array" in _types(spec, schema):
        return [alt["items"] for alt in _alternatives(spec, schema) if "items" in alt]
    return [schema]


def _webhook_keys(spec: Mapping[str, Any], event: str) -> list[str]:
    return [key for key in spec["webhooks"] if key == event or key.startswith(f"{event}.")]


@pytest.fixture(scope="module")
def spec() -> Mapping[str, Any]:
    return GitHubContract.load().spec


@pytest.mark.parametrize("event", sorted(EVENT_MODELS))
def test_every_field_a_model_reads_is_in_githubs_schema_with_a_compatible_type(
    spec: Mapping[str, Any], event: str
) -> None:
    keys = _webhook_keys(spec, event)
    assert keys, f"{event}: no vendored webhook schema"
    schemas = [spec["webhooks"][key]["schema"] for key in keys]
    assert list(_problems(spec, EVENT_MODELS[event], schemas, event)) == []


def test_the_schema_check_catches_a_field_github_does_not_send(spec: Mapping[str, Any]) -> None:
    class Invented(IssuesEvent):
        performed_via_github_app: int | None = None

    schemas = [spec["webhooks"][key]["schema"] for key in _webhook_keys(spec, "issues")]
    problems = list(_problems(spec, Invented, schemas, "issues"))
    assert problems == ["issues.performed_via_github_app: not in GitHub's schema"]


def test_the_schema_check_catches_a_required_field_github_may_send_as_null(spec: Mapping[str, Any]) -> None:
    class TooStrict(CheckRun):
        conclusion: str  # type: ignore[assignment]

    schema = spec["definitions"]["hook.check-run-with-simple-check-suite"]
    assert set(_problems(spec, TooStrict, [schema], "check_run")) == {
        "check_run.conclusion: GitHub sends ['null', 'string'], the model accepts ['string']",
        "check_run.conclusion: required by the model but nullable in GitHub's schema",
    }


def test_the_schema_check_catches_a_required_field_some_action_lacks(spec: Mapping[str, Any]) -> None:
    class NeedsLabel(IssuesEvent):
        label: Label  # type: ignore[assignment]

    schemas = [spec["webhooks"][key]["schema"] for key in _webhook_keys(spec, "issues")]
    assert list(_problems(spec, NeedsLabel, schemas, "issues")) == [
        "issues.label: required by the model but optional in GitHub's schema"
    ]


# Payloads ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(path.name for path in FIXTURES.glob("*.json")))
def test_every_sample_payload_parses(name: str) -> None:
    event = name.split(".")[0]
    parsed = parse_event(event, json.loads((FIXTURES / name).read_text()))
    assert isinstance(parsed, EVENT_MODELS[event])


def test_a_payload_fakehub_emits_that_agentz_cannot_read_is_a_contract_violation() -> None:
    recorder = ContractRecorder(GitHubContract.load())
    payload = json.loads((FIXTURES / "issues.labeled.json").read_text())
    payload["issue"]["number"] = "1"
    recorder.webhook("issues", payload)
    assert any("Agent-Z cannot read it: issues payload: issue.number is invalid" in v for v in recorder.violations)


@pytest.mark.parametrize(
    ("event", "payload", "message"),
    [
        ("issues", [], "issues payload: (root) is not an object"),
        ("issues", {"issue": {"number": 1}}, "issues payload: repository is missing"),
        ("issues", {"issue": {"number": True}, "repository": {"full_name": "o/r"}},
         "issues payload: issue.number is invalid: Input should be a valid integer"),
        ("issue_comment", {"issue": {"number": 1}, "repository": {"full_name": "o/r"}, "comment": {}},
         "issue_comment payload: comment.id is missing"),
        ("installation_repositories", {"installation": {"id": 1}, "repositories_added": [{"full_name": "x"}]},
         "installation_repositories payload: repositories_added[0].full_name is invalid: "
         "String should match pattern '.+/.+'"),
        ("check_run", {"check_run": {"id": 1, "head_sha": ""}, "repository": {"full_name": "o/r"}},
         "check_run payload: check_run.head_sha is invalid: String should have at least 1 character"),
        ("push", {}, "push payload: (event) is not an event Agent-Z reads"),
    ],
)
def test_a_bad_payload_names_the_event_and_the_field(event: str, payload: Any, message: str) -> None:
    with pytest.raises(BadPayload) as caught:
        parse_event(event, payload)
    assert str(caught.value) == message


def test_a_bad_payload_message_never_quotes_the_payload() -> None:
    secret_text = "ghp_" + "x" * 36
    with pytest.raises(BadPayload) as caught:
        parse_event("issues", {"issue": {"number": secret_text}, "repository": {"full_name": secret_text}})
    assert secret_text not in str(caught.value)


# Fuzz --------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
# Junk shaped like the slices we read: known keys with random values, at any depth.
known_keys = st.sampled_from(["action", "issue", "comment", "repository", "installation", "sender", "label",
                              "changes", "pull_request", "review", "check_run", "check_suite", "sha", "state",
                              "number", "id", "full_name", "login", "user", "head", "repositories_added",
                              "performed_via_github_app", "app", "body", "from", "head_sha"])
shaped = st.recursive(
    json_values,
    lambda children: st.dictionaries(known_keys, children, max_size=8) | st.lists(children, max_size=3),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(event=st.sampled_from(sorted(EVENT_MODELS)), payload=shaped)
def test_random_junk_raises_nothing_but_bad_payload(event: str, payload: Any) -> None:
    message: str | None = None
    try:
        parsed = parse_event(event, payload)
    except BadPayload as exc:
        message = str(exc)
    else:
        assert isinstance(parsed, EVENT_MODELS[event])
    assert message is None or message.startswith(f"{event} payload: ")


@settings(max_examples=150, deadline=None)
@given(model=st.sampled_from([CheckRun, CheckSuite, CommitStatus]), payload=shaped)
def test_random_rest_answers_raise_nothing_but_bad_payload(model: type[BaseModel], payload: Any) -> None:
    message: str | None = None
    try:
        parse_payload(model, "answer", payload)
    except BadPayload as exc:
        message = str(exc)
    assert message is None or message.startswith("answer payload: ")
