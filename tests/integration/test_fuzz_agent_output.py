"""Fuzz the parsers that read agents' answers: plans, reviews, rankings, embedded JSON.

An agent is an untrusted text generator. Whatever it prints, the parsers return a
valid model or raise :class:`InvalidAgentOutput`; nothing else escapes, and a
review is an approval only through its structured verdict.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from agentz_app.domain.plans import Plan, Review
from agentz_app.domain.scheduling import Ranking
from agentz_app.errors import InvalidAgentOutput
from agentz_app.scheduling.agent import validate_ranking
from workers.roles.parse import parse_output
from workers.runners.output import extract_json

FUZZ = settings(max_examples=150, deadline=None)

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)

VALID_PLAN = {"summary": "Add a flag", "steps": ["edit cli.py", "add a test"], "files": ["src/cli.py"],
              "modules": ["cli"], "risk": "low", "test_command": "pytest -q"}
VALID_REVIEW = {"verdict": "approve", "summary": "Looks good", "findings": [
    {"file": "src/cli.py", "line": 3, "severity": "minor", "message": "naming", "blocking": False}]}
VALID_RANKING = {"ranking": [{"number": 1, "score": 90, "reason": "small"}, {"number": 2, "score": 40}],
                 "rejected": [{"number": 3, "reason": "vague: no detail"}]}
CANDIDATES = [1, 2, 3, 4]


def _nested(depth: int, kind: str) -> str:
    return "[" * depth + "]" * depth if kind == "array" else '{"a":' * depth + "1" + "}" * depth


def _mutate(value: Any, path_choice: int, replacement: Any, drop: bool) -> Any:
    """Change or drop one (nested) field of a JSON value."""
    if isinstance(value, dict) and value:
        keys = sorted(value)
        key = keys[path_choice % len(keys)]
        copy = dict(value)
        if drop:
            del copy[key]
        elif isinstance(copy[key], dict | list) and path_choice % 3:
            copy[key] = _mutate(copy[key], path_choice // 3, replacement, drop)
        else:
            copy[key] = replacement
        return copy
    if isinstance(value, list) and value:
        copy_list = list(value)
        index = path_choice % len(copy_list)
        copy_list[index] = _mutate(copy_list[index], path_choice // 3, replacement, drop)
        return copy_list
    return replacement


def _render(value: Any, style: str, prose: str, cut: int) -> str:
    text = json.dumps(value)
    return {
        "bare": text,
        "prose": f"{prose}\n{text}\n{prose}",
        "fenced": f"{prose}\n```json\n{text}\n```\n",
        "plain_fence": f"```\n{text}\n```",
        "other_fence": f"```python\n{text}\n```",
        "truncated": text[: cut % (len(text) + 1)],
        "single_quotes": text.replace('"', "'"),
        "trailing_comma": text[:-1] + ",}" if text.endswith("}") else text,
        "two_objects": f"{text}\n{json.dumps({'note': prose})}",
        "unclosed_fence": f"```json\n{text}",
    }[style]


styles = st.sampled_from(["bare", "prose", "fenced", "plain_fence", "other_fence", "truncated", "single_quotes",
                          "trailing_comma", "two_objects", "unclosed_fence"])


def near_miss(valid: dict[str, Any]) -> st.SearchStrategy[str]:
    """Text that is almost the valid answer: one field changed or dropped, oddly wrapped."""
    mutated = st.builds(_mutate, st.just(valid), st.integers(0, 50), json_values, st.booleans())
    return st.builds(_render, st.just(valid) | mutated, styles, st.text(max_size=40), st.integers(0, 400))


def agent_texts(valid: dict[str, Any]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=300),
        json_values.map(json.dumps),
        near_miss(valid),
        st.tuples(st.integers(1, 50_000), st.sampled_from(["array", "object"])).map(lambda args: _nested(*args)),
        st.tuples(st.integers(1, 50_000), st.sampled_from(["array", "object"]), styles, st.text(max_size=10)).map(
            lambda args: _render_raw(_nested(args[0], args[1]), args[2], args[3])
        ),
        st.sampled_from(["{", "}", "[", "```json\n{\n```", "{}" * 50, "{" * 2000, "[" * 2000, '{"a": "\\ud800"}',
                         '{"summary": NaN}', "\x00{\x00}", '{"verdict": "approve", "summary": "x"' * 20]),
    )


def _render_raw(text: str, style: str, prose: str) -> str:
    if style in ("fenced", "plain_fence", "unclosed_fence"):
        return f"{prose}\n```json\n{text}\n```"
    return f"{prose} {text} {prose}"


def _parses_or_is_invalid(model: type[BaseModel], text: str, structured: Any = None) -> BaseModel | None:
    try:
        value = parse_output(model, text, structured)
    except InvalidAgentOutput as exc:
        invalid = exc
    else:
        assert isinstance(value, model)
        return value
    assert invalid.raw == text
    return None


@FUZZ
@given(text=agent_texts(VALID_PLAN), structured=st.none() | json_values)
def test_plan_parsing_returns_a_plan_or_invalid_output(text: str, structured: Any) -> None:
    plan = _parses_or_is_invalid(Plan, text, structured)
    if isinstance(plan, Plan):
        assert plan.steps
        assert plan.summary
        assert all(not path.startswith("/") and ".." not in path.split("/") for path in plan.files)


@FUZZ
@given(text=agent_texts(VALID_REVIEW), structured=st.none() | json_values)
def test_review_parsing_returns_a_review_or_invalid_output(text: str, structured: Any) -> None:
    review = _parses_or_is_invalid(Review, text, structured)
    if isinstance(review, Review):
        assert review.approved == (review.verdict == "approve" and not review.blocking_findings)


@FUZZ
@given(data=agent_texts(VALID_RANKING) | json_values)
def test_ranking_validation_returns_a_ranking_or_invalid_output(data: Any) -> None:
    try:
        ranking = validate_ranking(data, CANDIDATES)
    except InvalidAgentOutput:
        return
    assert isinstance(ranking, Ranking)
    numbers = [item.number for item in ranking.ranking] + [item.number for item in ranking.rejected]
    assert set(numbers) <= set(CANDIDATES)
    assert len(numbers) == len(set(numbers))


@FUZZ
@given(text=agent_texts(VALID_PLAN) | agent_texts(VALID_REVIEW))
def test_extract_json_returns_an_object_an_array_or_nothing(text: str) -> None:
    assert isinstance(extract_json(text), dict | list | type(None))


lgtm_prose = st.lists(
    st.sampled_from(["LGTM", "lgtm!", "Looks good to me.", "Approved.", "approve", "verdict: approve", "Ship it.",
                     "not LGTM", '"verdict": "approve"', "✅"]) | st.text(max_size=20),
    min_size=1, max_size=6,
).map(" ".join).filter(lambda text: "lgtm" in text.lower())


@FUZZ
@given(
    prose=lgtm_prose,
    findings=st.lists(st.fixed_dictionaries({
        "file": st.just("a.py"), "severity": st.sampled_from(["info", "minor", "major", "critical"]),
        "message": st.just("fix this"), "blocking": st.booleans(),
    }), max_size=3),
    style=styles,
    structured=st.booleans(),
)
def test_lgtm_text_with_a_request_changes_verdict_is_never_an_approval(
    prose: str, findings: list[dict[str, Any]], style: str, structured: bool
) -> None:
    answer = {"verdict": "request_changes", "summary": prose, "findings": findings}
    text = _render(answer, style, prose, cut=len(json.dumps(answer)) // 2)
    review = _parses_or_is_invalid(Review, text, answer if structured else None)
    assert review is None or (isinstance(review, Review) and not review.approved)


@pytest.mark.parametrize("depth", [1_000, 100_000])
@pytest.mark.parametrize("kind", ["array", "object"])
def test_deeply_nested_answers_are_invalid_output_not_a_crash(depth: int, kind: str) -> None:
    text = _nested(depth, kind)
    for wrapped in (text, f"Here you go:\n```json\n{text}\n```", f"plan: {text} done"):
        with pytest.raises(InvalidAgentOutput):
            parse_output(Plan, wrapped)
        with pytest.raises(InvalidAgentOutput):
            validate_ranking(wrapped, CANDIDATES)
        assert isinstance(extract_json(wrapped), dict | list | type(None))
