"""Check Run payloads for each pipeline stage: pure rendering, no I/O.

Everything shown is redacted (secrets recognised by shape, plus the ``secret_values``
passed in: pass :func:`agentz_app.secrets.configured_secret_values`) before it is cut to
GitHub's limits, so a cut never leaves part of a secret behind.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from agentz_app.domain.plans import Finding, Plan, Review, plan_markdown
from agentz_app.secrets import redact_text

STAGES = ("plan", "review", "ci-fix", "config")
CHECK_NAME_PREFIX = "Agent-Z / "
MAX_SUMMARY = 65_535
"""Bytes (UTF-8), not characters: GitHub answers 422 "summary exceeds a maximum bytesize" past it."""
MAX_TEXT = 65_535
MAX_TITLE = 255
ANNOTATIONS_PER_REQUEST = 50
TRUNCATION_MARKER = "\n\n… (truncated by Agent-Z)"

ACTIONS: tuple[dict[str, str], ...] = (
    {"label": "Retry", "description": "Run this issue again from the start", "identifier": "retry"},
    {"label": "Stop", "description": "Cancel this Agent-Z run", "identifier": "stop"},
)

_SEVERITY_LEVEL = {"info": "notice", "minor": "notice", "major": "warning", "critical": "failure"}


def check_name(stage: str) -> str:
    """``Agent-Z / <stage>``."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}")
    return CHECK_NAME_PREFIX + stage


def is_own_check(name: str) -> bool:
    """True for check runs Agent-Z itself reports (they never gate a run)."""
    return name.startswith(CHECK_NAME_PREFIX)


def external_id(run_id: str, stage: str) -> str:
    """The key used to find an existing check run before creating one."""
    return f"agent-z:{run_id}:{stage}"


def truncate(text: str, limit: int = MAX_SUMMARY) -> str:
    """``text`` cut to ``limit`` UTF-8 bytes (GitHub's unit), marker included, never inside a character."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    room = limit - len(TRUNCATION_MARKER.encode("utf-8"))
    return data[:room].decode("utf-8", errors="ignore") + TRUNCATION_MARKER


def finding_annotations(findings: Sequence[Finding]) -> list[dict[str, Any]]:
    """Review findings as check-run annotations (findings without a line point at line 1)."""
    notes = []
    for finding in findings:
        line = finding.line or 1
        notes.append(
            {
                "path": finding.file,
                "start_line": line,
                "end_line": line,
                "annotation_level": _SEVERITY_LEVEL[finding.severity],
                "title": truncate(f"{finding.severity}{' (blocking)' if finding.blocking else ''}", MAX_TITLE),
                "message": truncate(finding.message, 64_000),
            }
        )
    return notes


def chunks(items: Sequence[dict[str, Any]], size: int = ANNOTATIONS_PER_REQUEST) -> Iterator[list[dict[str, Any]]]:
    """Split annotations into request-sized batches."""
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def check_output(title: str, summary: str, text: str = "", *, secret_values: Sequence[str] = ()) -> dict[str, Any]:
    """The ``output`` object, redacted, with GitHub's size limits applied."""

    def clean(value: str, limit: int) -> str:
        return truncate(redact_text(value, values=secret_values), limit)

    output: dict[str, Any] = {"title": clean(title, MAX_TITLE), "summary": clean(summary or title, MAX_SUMMARY)}
    if text:
        output["text"] = clean(text, MAX_TEXT)
    return output


def redact_annotation(note: dict[str, Any], *, secret_values: Sequence[str] = ()) -> dict[str, Any]:
    """``note`` with secrets redacted from its path, title, message and raw details."""
    clean = dict(note)
    for key in ("path", "title", "message", "raw_details"):
        if isinstance(clean.get(key), str):
            clean[key] = redact_text(clean[key], values=secret_values)
    return clean


def check_run_payload(
    run_id: str,
    stage: str,
    *,
    head_sha: str,
    status: str,
    conclusion: str | None = None,
    title: str,
    summary: str,
    text: str = "",
    details_url: str | None = None,
    notes: Sequence[dict[str, Any]] = (),
    secret_values: Sequence[str] = (),
) -> dict[str, Any]:
    """Body for creating (or, without ``name``/``head_sha``, patching) one stage's check run.

    Title, summary, text and annotations are redacted (see the module docstring).
    """
    if status not in ("queued", "in_progress", "completed"):
        raise ValueError(f"bad check status {status!r}")
    if (status == "completed") != (conclusion is not None):
        raise ValueError("a conclusion is required exactly when the check is completed")
    output = check_output(title, summary, text, secret_values=secret_values)
    if notes:
        output["annotations"] = [redact_annotation(note, secret_values=secret_values)
                                 for note in list(notes)[:ANNOTATIONS_PER_REQUEST]]
    payload: dict[str, Any] = {
        "name": check_name(stage),
        "head_sha": head_sha,
        "external_id": external_id(run_id, stage),
        "status": status,
        "output": output,
        "actions": [dict(action) for action in ACTIONS],
    }
    if conclusion is not None:
        payload["conclusion"] = conclusion
    if details_url:
        payload["details_url"] = details_url
    return payload


def plan_check(plan: Plan | None, *, error: str | None = None) -> tuple[str, str, str]:
    """(conclusion, title, summary) for the plan stage."""
    if plan is None:
        return "failure", "No valid plan", truncate(error or "The Task Lead did not produce a valid plan.")
    return "success", f"Plan ({plan.risk} risk)", plan_markdown(plan)


def review_check(
    review: Review | None, *, rounds: int, changed_files: Sequence[str] = (), error: str | None = None,
    cost_md: str = "",
) -> tuple[str, str, str]:
    """(conclusion, title, summary) for the build-and-review stage: the change, the Reviewer's verdict and,
    given ``cost_md`` (:func:`~agentz_app.reporting.costs.cost_markdown`), what the agent calls cost."""
    files = "\n".join(f"- `{path}`" for path in changed_files) or "(no files changed)"
    changed = f"**Changed files** ({len(changed_files)})\n{files}" + (f"\n\n{cost_md}" if cost_md else "")
    if review is None:
        reason = error or "The Reviewer did not produce a valid review."
        return "failure", "Review failed", truncate(f"{reason}\n\n{changed}")
    blocking = len(review.blocking_findings)
    lines = [review.summary.strip(), "", f"Rounds: {rounds}", f"Findings: {len(review.findings)} ({blocking} blocking)"]
    for finding in review.findings:
        where = finding.file + (f":{finding.line}" if finding.line else "")
        flag = " (blocking)" if finding.blocking else ""
        lines.append(f"- **{finding.severity}**{flag} `{where}`: {finding.message}")
    lines += ["", changed]
    if review.approved:
        return "success", "Approved by the Reviewer", truncate("\n".join(lines))
    return "action_required", f"{blocking} blocking finding{'s' if blocking != 1 else ''}", truncate("\n".join(lines))


def ci_fix_check(round_: int, feedback: dict[str, Any] | None, *, done: bool) -> tuple[str | None, str, str]:
    """(conclusion or None while running, title, summary) for the CI-fix stage."""
    kind = (feedback or {}).get("kind", "ci")
    what = "review feedback" if kind == "review" else "CI failure"
    names = ", ".join(str(check.get("name")) for check in (feedback or {}).get("checks", []))
    summary = f"Round {round_}: addressing {what}" + (f" ({names})" if names else "")
    return ("success" if done else None), f"Fix round {round_}", summary
