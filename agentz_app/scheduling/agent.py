"""The Scheduler Agent: ranks gate-passing candidates through the runner contract.

The agent answers with JSON::

    {"ranking": [{"number": N, "score": 0-100, "reason": "..."}],
     "rejected": [{"number": N, "reason": "tracking|vague|low_value|high_risk: ..."}]}

validated with pydantic against the candidate set. Invalid output gets one repair
prompt; a second failure raises :class:`InvalidAgentOutput` carrying the raw text.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agentz_app.domain.gates import IssueView
from agentz_app.domain.runner import Runner, RunnerResult
from agentz_app.domain.scheduling import Ranking
from agentz_app.errors import InvalidAgentOutput, RunnerError
from agentz_app.untrusted import UNTRUSTED_NOTICE, untrusted_block

ROLE = "scheduler"
BODY_LIMIT = 1500
TITLE_LIMIT = 300
LABELS_LIMIT = 300


def validate_ranking(data: object, candidates: Sequence[int]) -> Ranking:
    """Parse and check the agent's JSON; raise InvalidAgentOutput with a precise message."""
    if isinstance(data, str):
        data = extract_json(data)
    try:
        ranking = Ranking.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise InvalidAgentOutput(f"ranking does not match the schema: {problems}") from None
    allowed = set(candidates)
    seen: set[int] = set()
    for number in [item.number for item in ranking.ranking] + [item.number for item in ranking.rejected]:
        if number not in allowed:
            raise InvalidAgentOutput(f"#{number} is not one of the candidates")
        if number in seen:
            raise InvalidAgentOutput(f"#{number} appears more than once")
        seen.add(number)
    return ranking


_FENCED = re.compile(r"```(?:json)?\s*(\{.*?\})\s*```", re.DOTALL)


def extract_json(text: str) -> Any:
    """The JSON object in an agent's text answer (bare, or in a fenced block)."""
    text = text.strip()
    candidates = [match.group(1) for match in _FENCED.finditer(text)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except (ValueError, RecursionError):
            continue
    raise InvalidAgentOutput("no JSON object in the answer", raw=text)


def _truncate(text: str, limit: int) -> str:
    text = (text or "").strip()
    return text if len(text) <= limit else text[:limit].rstrip() + " …[truncated]"


def prompt_header(repo: str) -> str:
    """The instructions every ranking prompt starts with, up to the ``Candidates:`` line."""
    return "\n".join([
        f"You are the scheduler for the GitHub repository {repo}.",
        "Rank the candidate issues below by how valuable and ready they are for an autonomous",
        "coding agent to implement now. Reject issues that are tracking/epic issues (tracking),",
        "too vague to implement (vague), not worth doing (low_value), or risky to change",
        "without a human (high_risk). Score each issue on its own merits: scores are compared",
        "with those of issues assessed in other prompts.",
        "",
        UNTRUSTED_NOTICE,
        "",
        "Answer with one JSON object and nothing else:",
        '{"ranking": [{"number": <issue number>, "score": <0-100>, "reason": "<short>"}],',
        ' "rejected": [{"number": <issue number>, "reason": "<tracking|vague|low_value|high_risk>: <short>"}]}',
        "Use only the candidate numbers; list each candidate at most once.",
        "",
        "Candidates:",
    ])


def candidate_section(issue: IssueView, *, body_limit: int = BODY_LIMIT) -> str:
    """One candidate's part of the prompt (starting with a line break): heading, labels, untrusted block."""
    labels = _truncate(", ".join(issue.labels), LABELS_LIMIT) if issue.labels else "none"
    text = f"Title: {_truncate(issue.title, TITLE_LIMIT)}\n\n{_truncate(issue.body, body_limit) or '(no description)'}"
    return "\n" + "\n".join([
        "",
        f"### #{issue.number}: title and description in the block below",
        f"Labels: {labels}",
        untrusted_block(text, source=f"issue #{issue.number} title and description", author=issue.author,
                        association=issue.author_association),
    ])


def fitted_section(issue: IssueView, budget: int, *, body_limit: int = BODY_LIMIT) -> str:
    """:func:`candidate_section` with the description cut further until it fits ``budget`` characters."""
    section = candidate_section(issue, body_limit=body_limit)
    while len(section) > budget and body_limit > 0:
        body_limit = max(0, body_limit - (len(section) - budget) - 16)
        section = candidate_section(issue, body_limit=body_limit)
    return section


def build_prompt(repo: str, candidates: Sequence[IssueView], *, body_limit: int = BODY_LIMIT) -> str:
    """The ranking prompt: candidate numbers and labels, titles and truncated bodies as untrusted data."""
    sections = "".join(candidate_section(issue, body_limit=body_limit) for issue in candidates)
    return prompt_header(repo) + sections + "\n"


@dataclass(frozen=True)
class PromptBatch:
    """Candidates sent together in one Scheduler Agent call, and the prompt that carries them."""

    candidates: tuple[IssueView, ...]
    prompt: str


def plan_batches(repo: str, candidates: Sequence[IssueView], *, max_candidates: int,
                 max_chars: int) -> list[PromptBatch]:
    """Split ``candidates`` into prompts of at most ``max_candidates`` issues and ``max_chars`` characters.

    Candidates keep their order. An issue too long for a prompt on its own has its
    description cut to fit; it is never sent whole.
    """
    header = prompt_header(repo)
    room = max_chars - len(header) - 1  # the closing line break
    batches: list[PromptBatch] = []
    chosen: list[IssueView] = []
    sections: list[str] = []

    def flush() -> None:
        if chosen:
            batches.append(PromptBatch(tuple(chosen), header + "".join(sections) + "\n"))
            chosen.clear()
            sections.clear()

    for issue in candidates:
        section = fitted_section(issue, room)
        if chosen and (len(chosen) >= max_candidates or sum(map(len, sections)) + len(section) > room):
            flush()
        chosen.append(issue)
        sections.append(section)
    flush()
    return batches


def repair_prompt(error: str) -> str:
    """The single follow-up asking the agent to fix its answer."""
    return (
        f"Your answer could not be used: {error}\n"
        "Reply again with only the corrected JSON object in the required shape."
    )


@dataclass(frozen=True)
class RankingOutcome:
    """A validated ranking plus what it cost."""

    ranking: Ranking
    calls: int
    cost_usd: float


def _answer(result: RunnerResult) -> Any:
    if not result.ok:
        raise InvalidAgentOutput(f"agent failed: {result.error or f'exit code {result.exit_code}'}", raw=result.text)
    return result.json if result.json is not None else result.text


async def rank_candidates(
    runner: Runner,
    repo: str,
    candidates: Sequence[IssueView],
    *,
    workdir: Path,
    timeout: float,
    prompt: str | None = None,
) -> RankingOutcome:
    """Ask the agent for a ranking; one repair prompt on invalid output, then give up.

    ``prompt`` is the batch's prompt (:func:`plan_batches`); by default one is built for every candidate.
    """
    numbers = [issue.number for issue in candidates]
    prompt = prompt if prompt is not None else build_prompt(repo, candidates)
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    result = await runner.run(ROLE, prompt, workdir, timeout=timeout)
    cost = result.cost_usd
    try:
        return RankingOutcome(validate_ranking(_answer(result), numbers), 1, cost)
    except InvalidAgentOutput as first:
        error = str(first)
    try:
        follow_up = repair_prompt(error)
        if result.session_id is None:  # no conversation to resume: restate the task
            follow_up = f"{prompt}\nYour previous answer was:\n{_truncate(result.text, 4000)}\n\n{follow_up}"
        retry = await runner.run(ROLE, follow_up, workdir, session_id=result.session_id, timeout=timeout)
    except RunnerError as exc:
        raise InvalidAgentOutput(f"repair attempt failed: {exc}", raw=result.text) from None
    cost += retry.cost_usd
    try:
        return RankingOutcome(validate_ranking(_answer(retry), numbers), 2, cost)
    except InvalidAgentOutput as second:
        raw = f"{result.text}\n--- repair answer ---\n{retry.text}"
        raise InvalidAgentOutput(f"invalid ranking after one repair: {second}", raw=raw) from None
