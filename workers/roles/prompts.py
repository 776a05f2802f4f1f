"""Prompt builders: pure functions of the issue, the plan, findings and feedback.

Text from GitHub reaches an agent only inside an untrusted-data block (see
:mod:`agentz_app.untrusted`), after our notice saying what those blocks are.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentz_app.domain.plans import Finding, Impact, Plan, Review, plan_markdown
from agentz_app.untrusted import UNTRUSTED_NOTICE, untrusted_block
from workers.content_policy import Violation

MAX_BODY_CHARS = 20_000
MAX_FEEDBACK_CHARS = 30_000
MAX_COMMENT_CHARS = 2_000
MAX_COMMENTS = 20

_CI = "continuous integration output, not a person"
_COMMENT_SOURCES = {"issue": "comment", "review": "pull request review", "review_comment": "inline review comment"}


@dataclass(frozen=True)
class AuthoredText:
    """A comment or review from GitHub and who wrote it; untrusted whoever the author is."""

    body: str
    author: str = ""
    association: str | None = None  # GitHub's author_association; None when unknown
    kind: str = "issue"  # issue | review | review_comment


@dataclass(frozen=True)
class IssueContext:
    """What the agents are told about the issue."""

    repo: str
    number: int
    title: str
    body: str = ""
    comments: Sequence[AuthoredText] = field(default_factory=tuple)
    default_branch: str = "main"
    author: str = ""
    author_association: str | None = None


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "\n… (truncated)"


def _issue_block(issue: IssueContext) -> str:
    text = f"Title: {issue.title.strip()}\n\n{_clip(issue.body.strip() or '(no description)', MAX_BODY_CHARS)}"
    parts = [
        f"Repository: {issue.repo} (default branch `{issue.default_branch}`)",
        f"Issue #{issue.number}: its title and description are in the first block below.",
        "",
        UNTRUSTED_NOTICE,
        "",
        untrusted_block(text, source=f"issue #{issue.number} title and description", author=issue.author,
                        association=issue.author_association),
    ]
    comments = issue.comments[-MAX_COMMENTS:]
    if comments:
        parts += ["", f"The issue's latest {len(comments)} comment(s), oldest first:"]
        for comment in comments:
            source = f"{_COMMENT_SOURCES.get(comment.kind, 'comment')} on #{issue.number}"
            parts += ["", untrusted_block(_clip(comment.body.strip(), MAX_COMMENT_CHARS), source=source,
                                          author=comment.author, association=comment.association)]
    return "\n".join(parts)


def _schema(model: Mapping[str, Any]) -> str:
    return json.dumps(model, indent=1, sort_keys=True)




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


def impact_prompt(issue: IssueContext) -> str:
    """Ask the Task Lead for an impact analysis (a plan plus open questions) as JSON."""
    return "\n".join(
        [
            "You are the Task Lead for this GitHub issue. Read the repository in the current directory",
            "and analyse the impact of resolving it. Do not change any file yet.",
            "",
            _issue_block(issue),
            "",
            "Answer with one JSON object only, matching this schema:",
            _schema(Impact.model_json_schema()),
            "`files` lists repository-relative paths you expect to change; `modules` names the areas",
            "of the code you will touch; `risk` is low, medium or high; `questions` lists what the",
            "maintainer must decide before you start (at most five, empty when nothing is open).",
        ]
    )


def revise_prompt(answers: str) -> str:
    """Ask the same Task Lead session to revise its plan after the maintainer's answers.

    The answers come from the maintainer at the terminal (the operator), so they are
    instructions, not untrusted data; the issue text stays inside its untrusted block.
    """
    return "\n".join(
        [
            "The maintainer running Agent-Z read your impact analysis and answered at the terminal.",
            "Their answers and plan edits below come from the operator and take precedence:",
            "",
            "<maintainer-answers>",
            answers.strip()[:MAX_FEEDBACK_CHARS],
            "</maintainer-answers>",
            "",
            "Answer with the revised plan as one JSON object only, matching this schema:",
            _schema(Plan.model_json_schema()),
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
            "The change, as a unified diff written by the developer agent:",
            untrusted_block(_clip(diff, 60_000), source="diff of the change", author="developer agent",
                            author_label="agent output, not a person"),
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


def _check_block(check: Mapping[str, Any]) -> str:
    summary = _clip(str(check.get("summary") or "").strip(), 4000) or "(no summary)"
    text = f"{check.get('name')}: {check.get('conclusion')}\n\n{summary}"
    notes = check.get("annotations") or []
    if notes:
        text += "\n\nAnnotations:\n" + "\n".join(
            f"- {note.get('path')}:{note.get('start_line', '?')}: {note.get('message', '')}" for note in notes[:50])
    log = str(check.get("log") or "").strip()
    if log:
        text += "\n\nThe failing step's log (the end):\n" + _clip(log, 10_000)
    return untrusted_block(text, source="failed CI check", author="CI", author_label=_CI)


def _review_comment_block(comment: Mapping[str, Any]) -> str:
    where = comment.get("path")
    where = f"{where}:{comment.get('line')}" if where and comment.get("line") else where
    source = f"inline review comment on {where}" if where else "review comment"
    if comment.get("reply_to"):
        source = f"reply in the review thread on {where}" if where else "reply in a review thread"
    return untrusted_block(_clip(str(comment.get("body", "")), 3000), source=source,
                           author=str(comment.get("author") or ""), association=comment.get("author_association"))


def feedback_prompt(feedback: Mapping[str, Any]) -> str:
    """Ask the developer session to fix CI failures or address a PR review (incl. inline comments)."""
    kind = feedback.get("kind", "ci")
    lines: list[str] = []
    if kind == "review":
        lines.append("Changes were requested on the pull request. Address the feedback in the blocks below.")
    else:
        lines.append("Continuous integration failed on the pull request. Fix the cause of every failure.")
    lines += ["", UNTRUSTED_NOTICE]
    body = str(feedback.get("review_body") or "").strip()
    if kind == "review" and body:
        heading, source = (("The request:", "pull request comment") if feedback.get("source") == "conversation"
                           else ("The review:", "pull request review"))
        lines += ["", heading, untrusted_block(_clip(body, 8000), source=source,
                                                     author=str(feedback.get("reviewer") or ""),
                                                     association=feedback.get("reviewer_association"))]
    checks = feedback.get("checks") or []
    if checks:
        lines += ["", "Failed checks (name: conclusion, then what the check reported):"]
        lines += [_check_block(check) for check in checks]
    annotations = feedback.get("annotations") or []
    if annotations:
        notes = "\n".join(f"- {note.get('path')}:{note.get('start_line', '?')}: {note.get('message', '')}"
                          for note in annotations[:100])
        lines += ["", "Annotations:", untrusted_block(notes, source="CI annotations", author="CI",
                                                      author_label=_CI)]
    comments = feedback.get("comments") or []
    if comments:
        lines += ["", "Review comments, thread by thread (each first comment, then its replies):"]
        lines += [_review_comment_block(comment) for comment in comments[:100]]
    logs = str(feedback.get("logs") or "").strip()
    if logs:
        lines += ["", "CI logs (the end):", untrusted_block(logs[-MAX_FEEDBACK_CHARS:], source="CI logs", author="CI",
                                                            author_label=_CI)]
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


def handover_prompt(
    task: str,
    *,
    issue: IssueContext | None = None,
    plan: Plan | None = None,
    diff: str = "",
    findings: Sequence[Finding] = (),
    review_summary: str = "",
) -> str:
    """Give ``task`` to a fresh session that continues someone else's work on the run.

    The session that worked on the run so far lives on another host (or is gone), so the
    prompt carries what it knew: the issue and plan (unless ``task`` already states them),
    the change so far as a diff (already in the working copy) and the open review findings.
    The diff and the findings were written by agents: they go in untrusted-data blocks.
    """
    lines = [
        "You are taking over work on this issue from an earlier agent session that is not available here.",
        "Its work so far is already in the current directory; continue from it rather than starting over.",
    ]
    lines += ["", _issue_block(issue)] if issue is not None else ["", UNTRUSTED_NOTICE]
    if plan is not None:
        lines += ["", "<plan>", plan_markdown(plan), "</plan>"]
    lines.append("")
    if diff.strip():
        lines += ["The change so far, as a unified diff against the default branch:",
                  untrusted_block(_clip(diff, 60_000), source="diff of the change so far", author="developer agent",
                                  author_label="agent output, not a person")]
    else:
        lines.append("No change has been made yet.")
    if findings:
        listed = "\n".join(
            f"- [{f.severity}, {'BLOCKING' if f.blocking else 'optional'}] "
            f"{f.file}{f':{f.line}' if f.line else ''}: {f.message}" for f in findings
        )
        if review_summary:
            listed = f"Summary: {_clip(review_summary, 4000)}\n\n{listed}"
        lines += ["", "The reviewer's open findings on that change:",
                  untrusted_block(listed, source="review findings", author="reviewer agent",
                                  author_label="agent output, not a person")]
    lines += ["", "Your task:", "", task]
    return "\n".join(lines)
