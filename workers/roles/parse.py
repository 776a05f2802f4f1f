"""Turn agent output into validated models, with one repair prompt in the same session."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from agentz_app.domain.runner import LogSink, Runner, RunnerResult
from agentz_app.errors import InvalidAgentOutput
from workers.roles.prompts import repair_prompt

M = TypeVar("M", bound=BaseModel)

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n(.*?)```", re.S)


def extract_json(text: str) -> Any:
    """The JSON object in ``text``: the whole text, the last fenced block, or the last balanced object."""
    stripped = text.strip()
    candidates: list[str] = [stripped]
    candidates.extend(reversed(_FENCE.findall(text)))
    candidates.extend(reversed(_balanced_objects(text)))
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except (ValueError, RecursionError):
            continue
        if isinstance(value, dict):
            return value
    raise ValueError("no JSON object found in the output")


def _balanced_objects(text: str) -> list[str]:
    """Top-level ``{...}`` spans, skipping braces inside strings."""
    spans: list[str] = []
    depth = 0
    start = -1
    index = 0
    while index < len(text):
        char = text[index]
        if char == '"' and depth > 0:
            index = _string_end(text, index)
            continue
        if char == "{":
            if depth == 0:
                start = index
            depth += 1
        elif char == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                spans.append(text[start : index + 1])
        index += 1
    return spans


_JSON_STRING = re.compile(r'"(?:\\.|[^"\\])*"', re.DOTALL)


def _string_end(text: str, index: int) -> int:
    """The index just past the JSON string that opens at ``text[index]``; the text's end if it never closes."""
    match = _JSON_STRING.match(text, index)
    return match.end() if match else len(text)


def parse_output(model: type[M], text: str, structured: object = None) -> M:
    """Validate the agent's structured output (or JSON found in its text) as ``model``."""
    errors: list[str] = []
    sources: list[Any] = []
    if isinstance(structured, Mapping):
        sources.append(dict(structured))
    try:
        sources.append(extract_json(text))
    except ValueError as exc:
        errors.append(str(exc))
    for source in sources:
        try:
            return model.model_validate(source)
        except ValidationError as exc:
            errors.append(_describe(exc))
    raise InvalidAgentOutput(f"invalid {model.__name__}: {'; '.join(errors) or 'empty output'}", raw=text)


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:10]:
        location = ".".join(str(part) for part in error["loc"]) or "(root)"
        parts.append(f"{location}: {error['msg']}")
    return ", ".join(parts)


async def run_structured(
    runner: Runner,
    model: type[M],
    *,
    role: str,
    prompt: str,
    workdir: Path,
    timeout: float,
    session_id: str | None = None,
    env: Mapping[str, str] | None = None,
    log: LogSink | None = None,
    before_repair: Callable[[RunnerResult], Awaitable[None]] | None = None,
    read_only: Sequence[Path] = (),
) -> tuple[M | None, list[RunnerResult], str, str | None]:
    """Ask for ``model``; on invalid output send one repair prompt in the same session.

    Returns ``(value, results, raw_text, error)``; ``value`` is None when both answers
    were invalid (or the agent failed), with ``raw_text`` keeping the last answer.
    ``before_repair`` lets the caller account cost (and stop) before the second call.
    """
    results: list[RunnerResult] = []
    first = await runner.run(role, prompt, workdir, session_id=session_id, timeout=timeout, env=env, log=log,
                             read_only=read_only)
    results.append(first)
    if not first.ok:
        return None, results, first.text, first.error or f"agent exited {first.exit_code}"
    try:
        return parse_output(model, first.text, first.json), results, first.text, None
    except InvalidAgentOutput as exc:
        problem = str(exc)
    if before_repair is not None:
        await before_repair(first)
    repair = await runner.run(
        role, repair_prompt(model.__name__, problem, model.model_json_schema()), workdir,
        session_id=first.session_id or session_id, timeout=timeout, env=env, log=log, read_only=read_only,
    )
    results.append(repair)
    if not repair.ok:
        return None, results, repair.text or first.text, repair.error or f"agent exited {repair.exit_code}"
    try:
        return parse_output(model, repair.text, repair.json), results, repair.text, None
    except InvalidAgentOutput as exc:
        return None, results, repair.text, str(exc)
