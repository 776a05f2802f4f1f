"""Prompt builders: pure functions of the issue, the plan, findings and feedback."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from workers.content_policy import Violation
from workers.roles.schemas import Finding, Plan, Review

MAX_BODY_CHARS = 20_000
MAX_FEEDBACK_CHARS = 30_000


@dataclass(frozen=True)
class IssueContext:
    """What the agents are told about the issue."""

    repo: str
    number: int
    title: str
    body: str = ""
    comments: Sequence[str] = field(default_factory=tuple)
    default_branch: str = "main"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "\n… (truncated)"


def _issue_block(issue: IssueContext) -> str:
    parts = [
        f"Repository: {issue.repo} (default branch `{issue.default_branch}`)",
        f"Issue #{issue.number}: {issue.title}",
        "",
        "<issue-body>",
        _clip(issue.body.strip() or "(no description)", MAX_BODY_CHARS),
        "</issue-body>",
    ]
    if issue.comments:
        parts += ["", "<issue-comments>"]
        parts += [f"- {_clip(comment.strip(), 2000)}" for comment in issue.comments[-20:]]
        parts.append("</issue-comments>")
    return "\n".join(parts)


def _schema(model: Mapping[str, Any]) -> str:
    return json.dumps(model, indent=1, sort_keys=True)


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


def plan_prompt(issue: IssueContext) -> str:
    """Ask the Task Lead for a plan as JSON."""
    return "\n".join(
        [
            "You are the Task Lead for this GitHub issue. Read the repository in the current directory",
            "and write an implementation plan. Do not change any file yet.",
            "",
            _issue_block(issue),
            "",
            "Answer with one JSON object only, matching this schema:",
            _schema(Plan.model_json_schema()),
            "`files` lists repository-relative paths you expect to change; `modules` names the",
            "areas of the code you will touch; `risk` is low, medium or high.",
        ]
    )


def develop_prompt(issue: IssueContext, plan: Plan) -> str:
    """Ask the developer (the Task Lead's session) to implement the plan."""
    lines = [
        "Implement the plan below for this issue in the current directory.",
        "Edit files directly; do not commit, push or open pull requests — that is done for you.",
        "",
        _issue_block(issue),
        "",
        "<plan>",
        plan_markdown(plan),
        "</plan>",
    ]
    if plan.test_command:
        lines += ["", f"Run `{plan.test_command}` and make it pass before you finish."]
    lines += ["", "End with a short summary of what you changed."]
    return "\n".join(lines)


def review_prompt(issue: IssueContext, plan: Plan, *, changed_files: Sequence[str], diff: str, round_: int) -> str:
    """Ask the independent Reviewer for a structured verdict on the change."""
    return "\n".join(
        [
            f"You are reviewing a change made for issue #{issue.number} (review round {round_}).",
            "Check correctness, tests, security and whether the issue is fully addressed.",
            "Do not modify any file.",
            "",
            _issue_block(issue),
            "",
            "<plan>",
            plan_markdown(plan),
            "</plan>",
            "",
            "Changed files: " + (", ".join(changed_files) or "(none)"),
            "",
            "<diff>",
            _clip(diff, 60_000),
            "</diff>",
            "",
            "Answer with one JSON object only, matching this schema:",
            _schema(Review.model_json_schema()),
            'Use verdict "approve" only when no finding is blocking; otherwise "request_changes".',
        ]
    )


def fix_review_prompt(findings: Sequence[Finding], *, summary: str = "") -> str:
    """Ask the developer session to address the reviewer's blocking findings."""
    lines = ["The reviewer asked for changes. Address every blocking finding below, then summarise."]
    if summary:
        lines += ["", f"Reviewer summary: {_clip(summary, 4000)}"]
    lines.append("")
    for finding in findings:
        where = finding.file + (f":{finding.line}" if finding.line else "")
        flag = "BLOCKING" if finding.blocking else "optional"
        lines.append(f"- [{finding.severity}, {flag}] {where}: {finding.message}")
    return "\n".join(lines)


def feedback_prompt(feedback: Mapping[str, Any]) -> str:
    """Ask the developer session to fix CI failures or address a PR review (incl. inline comments)."""
    kind = feedback.get("kind", "ci")
    lines: list[str] = []
    if kind == "review":
        lines.append("A maintainer requested changes on the pull request. Address all of their feedback.")
        body = str(feedback.get("review_body") or "").strip()
        if body:
            lines += ["", "<review>", _clip(body, 8000), "</review>"]
    else:
        lines.append("Continuous integration failed on the pull request. Fix the cause of every failure.")
    checks = feedback.get("checks") or []
    if checks:
        lines += ["", "Failed checks:"]
        for check in checks:
            lines.append(f"- {check.get('name')}: {check.get('conclusion')}")
            summary = str(check.get("summary") or "").strip()
            if summary:
                lines.append("  " + _clip(summary, 4000).replace("\n", "\n  "))
    annotations = feedback.get("annotations") or []
    if annotations:
        lines += ["", "Annotations:"]
        for note in annotations[:100]:
            lines.append(f"- {note.get('path')}:{note.get('start_line', '?')}: {note.get('message', '')}")
    comments = feedback.get("comments") or []
    if comments:
        lines += ["", "Review comments:"]
        for comment in comments[:100]:
            where = comment.get("path")
            where = f"{where}:{comment.get('line')}" if where and comment.get("line") else where
            prefix = f"{where}: " if where else ""
            lines.append(f"- {comment.get('author', 'someone')} on {prefix}{_clip(str(comment.get('body', '')), 3000)}")
    logs = str(feedback.get("logs") or "").strip()
    if logs:
        lines += ["", "<logs>", logs[-MAX_FEEDBACK_CHARS:], "</logs>"]
    lines += ["", "Edit files directly; do not commit or push. End with a short summary of the fix."]
    return "\n".join(lines)


def repair_prompt(model_name: str, problem: str, schema: Mapping[str, Any]) -> str:
    """Ask the same session to resend its answer as valid JSON."""
    return "\n".join(
        [
            f"Your previous answer was not a valid {model_name}: {_clip(problem, 2000)}",
            "Reply again with one JSON object only (no prose, no code fence), matching this schema:",
            _schema(schema),
        ]
    )


def policy_fix_prompt(violations: Sequence[Violation]) -> str:
    """Ask the developer to take out what the content policy refuses before anything is committed."""
    lines = [
        "Agent-Z will not commit your change: these files break its content policy. Remove or fix each one "
        "(no secrets or credentials, no links pointing outside the repository, no workflow changes, no huge or "
        "protected files, no nested repositories), keep the rest of your work, then summarise what you changed.",
        "",
    ]
    lines += [f"- {v.path}: {v.rule}: {v.detail}" for v in violations]
    return "\n".join(lines)
