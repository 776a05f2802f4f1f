"""Structured outputs of the Task Lead (plan) and the Reviewer (review)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Risk = Literal["low", "medium", "high"]
Severity = Literal["info", "minor", "major", "critical"]
Verdict = Literal["approve", "request_changes"]


class Plan(BaseModel):
    """The Task Lead's plan; predicted files and modules become resource claims."""

    model_config = ConfigDict(extra="ignore")

    summary: str = Field(min_length=1, max_length=4000)
    steps: list[str] = Field(min_length=1, max_length=50)
    files: list[str] = Field(default_factory=list, max_length=200)
    modules: list[str] = Field(default_factory=list, max_length=50)
    risk: Risk
    test_command: str | None = Field(default=None, max_length=500)

    @field_validator("files")
    @classmethod
    def _relative_paths(cls, files: list[str]) -> list[str]:
        cleaned = []
        for path in files:
            path = path.strip().removeprefix("./")
            if not path or path.startswith("/") or ".." in path.split("/") or "\x00" in path:
                raise ValueError(f"not a relative repository path: {path!r}")
            cleaned.append(path)
        return cleaned

    @field_validator("steps", "modules")
    @classmethod
    def _non_empty_items(cls, items: list[str]) -> list[str]:
        cleaned = [item.strip() for item in items]
        if any(not item for item in cleaned):
            raise ValueError("items must not be empty")
        return cleaned


class Impact(Plan):
    """The Task Lead's impact analysis before development: the plan (affected files and modules,
    risk) plus the open questions the person at the terminal should settle first."""

    questions: list[str] = Field(default_factory=list, max_length=20)

    @field_validator("questions")
    @classmethod
    def _non_empty_questions(cls, items: list[str]) -> list[str]:
        return [item.strip() for item in items if item.strip()]

    def as_plan(self) -> Plan:
        """The plan part, as stored on the run."""
        return Plan.model_validate(self.model_dump(exclude={"questions"}))


class Finding(BaseModel):
    """One review finding; ``blocking`` decides whether another fix round is needed."""

    model_config = ConfigDict(extra="ignore")

    file: str = Field(min_length=1, max_length=500)
    line: int | None = Field(default=None, ge=1)
    severity: Severity
    message: str = Field(min_length=1, max_length=4000)
    blocking: bool


class Review(BaseModel):
    """The Reviewer's verdict: a structured field, never a substring of prose."""

    model_config = ConfigDict(extra="ignore")

    verdict: Verdict
    findings: list[Finding] = Field(default_factory=list, max_length=500)
    summary: str = Field(min_length=1, max_length=8000)

    @property
    def blocking_findings(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.blocking]

    @property
    def approved(self) -> bool:
        """Approve only with an explicit verdict and no blocking finding."""
        return self.verdict == "approve" and not self.blocking_findings

def plan_markdown(plan: Plan) -> str:
    """The plan as Markdown, for prompts, comments and check runs."""
    lines = [plan.summary.strip(), "", f"**Risk:** {plan.risk}", "", "**Steps**"]
    lines += [f"{index}. {step}" for index, step in enumerate(plan.steps, 1)]
    if plan.files:
        lines += ["", "**Files:** " + ", ".join(f"`{path}`" for path in plan.files)]
    if plan.modules:
        lines += ["", "**Modules:** " + ", ".join(plan.modules)]
    if plan.test_command:
        lines += ["", f"**Tests:** `{plan.test_command}`"]
    return "\n".join(lines)
