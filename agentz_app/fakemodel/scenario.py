"""Scenarios for the fake model server: what the "model" answers to each agent role.

A scenario is JSON (or a dict)::

    {
      "title": "Fix the greeting",              # answer to title/summary calls without tools
      "steps": [
        {"role": "task_lead", "match": "#1", "json": {"summary": "..."}},
        {"role": "developer", "regex": "#1\\\\b",
         "writes": [{"path": "hello.txt", "content": "hi\\n"}],
         "text": "Implemented."},
        {"role": "reviewer", "call": 1, "json": {"verdict": "changes_requested"}},
        {"role": "reviewer", "call": 2, "json": {"verdict": "approve"}},
        {"role": "developer", "match": "slow", "stall": 30}
      ]
    }

A step is picked, in file order, by ``role`` (sent by Agent-Z's runners in the
``X-Agentz-Role`` header), ``match`` (substring of the prompt), ``regex`` and
``call`` (the Nth turn of that role, among the prompts the step fits, that the
server has seen). Its ``writes`` become tool
calls, one per model request, using each CLI's own file tool (Claude ``Write``,
Codex ``exec_command`` running ``apply_patch``, OpenCode ``write``); once every
write has a tool result in the conversation the server answers ``text`` with
``json`` appended as a fenced block. ``stall`` delays the answer (timeout tests);
``status`` makes the server answer with that HTTP error instead.

:func:`issue_scenario` builds the three steps Agent-Z needs for one issue.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agentz_app.patterns import Pattern

ROLE_HEADER = "X-Agentz-Role"


class FileWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(min_length=1)
    content: str


class ScenarioStep(BaseModel):
    """One scripted model behaviour and when it applies."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    role: str | None = None
    match: str | None = None
    regex: Pattern | None = None
    call: int | None = Field(default=None, ge=1)
    writes: list[FileWrite] = Field(default_factory=list)
    text: str = ""
    json_value: Any = Field(default=None, alias="json")
    stall: float = Field(default=0.0, ge=0)
    status: int | None = Field(default=None, ge=400, le=599)

    def fits(self, role: str | None, prompt: str) -> bool:
        """Whether role and prompt satisfy this step (ignoring ``call``)."""
        return (
            (self.role is None or self.role == role)
            and (self.match is None or self.match in prompt)
            and (self.regex is None or re.search(self.regex, prompt) is not None)
        )

    def final_text(self) -> str:
        """The closing answer: ``text`` plus ``json`` as a fenced block."""
        parts = [self.text] if self.text else []
        if self.json_value is not None:
            parts.append("```json\n" + json.dumps(self.json_value, indent=2) + "\n```")
        return "\n\n".join(parts) or "Done."


class Scenario(BaseModel):
    """The fake model's whole script."""

    model_config = ConfigDict(extra="forbid")
    title: str = "Agent-Z task"
    steps: list[ScenarioStep] = Field(default_factory=list)
    fallback_text: str = "I have nothing scripted for this request."

    @classmethod
    def from_json(cls, text: str) -> Scenario:
        """Parse and validate a scenario document."""
        return cls.model_validate_json(text)

    def pick(self, role: str | None, prompt: str, turns: Sequence[tuple[str | None, str]]) -> ScenarioStep | None:
        """The first step answering the current turn, or None.

        ``turns`` lists every (role, prompt) turn seen so far, the current one included;
        a step's ``call`` counts the turns of its role whose prompt it fits.
        """
        for step in self.steps:
            if not step.fits(role, prompt):
                continue
            if step.call is not None:
                call = sum(1 for seen_role, seen_prompt in turns if step.fits(seen_role, seen_prompt))
                if call != step.call:
                    continue
            return step
        return None


def issue_scenario(
    issue: int,
    *,
    plan: Any,
    files: Mapping[str, str],
    review: Any | list[Any],
    developer_text: str = "Implemented the change.",
) -> list[ScenarioStep]:
    """Steps for one issue: the task lead returns ``plan``, the developer writes ``files``, the reviewer ``review``.

    Steps match prompts mentioning ``#<issue>`` (word boundary, so #1 is not #10).
    A list of reviews answers successive review turns (``call`` 1, 2, ...); the last
    one also answers any later turn.
    """
    marker = rf"#{issue}\b"
    reviews = review if isinstance(review, list) else [review]
    steps = [
        ScenarioStep(role="task_lead", regex=marker, json_value=plan),
        ScenarioStep(role="developer", regex=marker, writes=[FileWrite(path=p, content=c) for p, c in files.items()],
                     text=developer_text),
    ]
    for index, verdict in enumerate(reviews, start=1):
        last = index == len(reviews)
        steps.append(ScenarioStep(role="reviewer", regex=marker, call=None if last else index,
                                   json_value=verdict))
    return steps
