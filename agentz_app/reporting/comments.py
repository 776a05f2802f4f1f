"""The one status comment per run, found by a hidden marker and edited in place.

Comments, pull request bodies and commit messages are redacted (secrets recognised by shape,
plus the ``secret_values`` passed in) before they are cut to size.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from agentz_app.reporting.text import truncate_bytes
from agentz_app.secrets import redact_text

MAX_COMMENT = 65_000  # bytes: below GitHub's 65,536 characters whatever the text is
_MARKER_RE = re.compile(r"<!-- agent-z:status run=([A-Za-z0-9_-]+) -->")

_HEADLINES = {
    "queued": "⏳ Queued",
    "planning": "🧭 Planning",
    "awaiting_approval": "📝 Plan ready — waiting for approval (`/agent-z run` to proceed)",
    "ready": "⏳ Planned, waiting for a worker",
    "deferred": "⏸️ Deferred: another run is changing the same files",
    "developing": "🛠️ Developing",
    "reviewing": "🔍 Reviewing",
    "fixing": "🛠️ Addressing review findings",
    "submitting": "📤 Opening the pull request",
    "waiting_checks": "⏳ Pull request open, waiting for checks",
    "fixing_ci": "🛠️ Fixing CI / review feedback",
    "done": "✅ Done: checks passed",
    "merged": "🎉 Merged",
    "cancelled": "🚫 Cancelled",
    "failed": "❌ Failed",
    "needs_human": "🙋 Needs a human",
}


def status_marker(run_id: str) -> str:
    """The hidden marker that identifies a run's status comment."""
    return f"<!-- agent-z:status run={run_id} -->"


def marker_run_id(body: str) -> str | None:
    """The run id in a status comment's marker, or None."""
    match = _MARKER_RE.search(body or "")
    return match.group(1) if match else None


@dataclass(frozen=True)
class StatusView:
    """Everything the status comment shows."""

    run_id: str
    status: str
    repo: str
    issue_number: int
    branch: str | None = None
    pr_number: int | None = None
    plan_markdown: str | None = None
    review_summary: str | None = None
    review_rounds: int = 0
    ci_rounds: int = 0
    error: str | None = None
    reason: str | None = None  # why the run is where it is (shown for endings)
    cost_usd: float = 0.0
    tokens: int = 0
    notes: Sequence[str] = field(default_factory=tuple)


def cost_text(cost_usd: float, tokens: int) -> str:
    """``cost $0.12 (34,000 tokens)``: what agent calls cost, as the status comment and checks show it."""
    return f"cost ${cost_usd:.2f} ({tokens:,} tokens)"


def render_status_comment(view: StatusView, *, secret_values: Sequence[str] = ()) -> str:
    """The status comment's Markdown, redacted, deterministic for the same view."""
    lines = [status_marker(view.run_id), f"**Agent-Z** · {_HEADLINES.get(view.status, view.status)}", "",
             " · ".join(_facts(view))]
    if view.reason and view.reason != view.error:
        reason = truncate_bytes(redact_text(view.reason, values=secret_values), 1000)
        lines += ["", f"Reason: {' '.join(reason.split())}"]
    if view.error:
        error = truncate_bytes(redact_text(view.error, values=secret_values), 4000)
        lines += ["", f"> {error.replace(chr(10), chr(10) + '> ')}"]
    for note in view.notes:
        lines += ["", note]
    if view.plan_markdown:
        open_attr = " open" if view.status == "awaiting_approval" else ""
        lines += ["", f"<details{open_attr}><summary>Plan</summary>", "", view.plan_markdown, "", "</details>"]
    if view.review_summary:
        lines += ["", "<details><summary>Review</summary>", "", view.review_summary, "", "</details>"]
    lines += ["", "<sub>Commands: `/agent-z status` · `/agent-z retry` · `/agent-z cancel`</sub>"]
    return truncate_bytes(redact_text("\n".join(lines), values=secret_values), MAX_COMMENT)


def _facts(view: StatusView) -> list[str]:
    """The status comment's one-line summary: run, pull request, branch, rounds and cost, as far as known."""
    facts = [f"run `{view.run_id}`"]
    if view.pr_number:
        facts.append(f"pull request #{view.pr_number}")
    if view.branch:
        facts.append(f"branch `{view.branch}`")
    if view.review_rounds:
        facts.append(f"review rounds: {view.review_rounds}")
    if view.ci_rounds:
        facts.append(f"fix rounds: {view.ci_rounds}")
    if view.cost_usd or view.tokens:
        facts.append(cost_text(view.cost_usd, view.tokens))
    return facts


def pr_body(
    issue_number: int, plan_summary: str, review_summary: str | None, run_id: str, *, secret_values: Sequence[str] = ()
) -> str:
    """The pull request description, redacted: closes the issue, plan and review summaries."""
    lines = [f"Closes #{issue_number}", "", "## Plan", "", plan_summary.strip() or "(no summary)"]
    if review_summary:
        lines += ["", "## Review", "", review_summary.strip()]
    lines += ["", f"<sub>Opened by Agent-Z, run `{run_id}`.</sub>"]
    return truncate_bytes(redact_text("\n".join(lines), values=secret_values), MAX_COMMENT)


def commit_message(issue_number: int, title: str, plan_summary: str, *, secret_values: Sequence[str] = ()) -> str:
    """``Fix #N: <title>`` followed by the plan summary, redacted."""
    subject = f"Fix #{issue_number}: {' '.join(redact_text(title, values=secret_values).split())}"[:120]
    body = redact_text(plan_summary, values=secret_values).strip()
    return f"{subject}\n\n{body}\n" if body else subject + "\n"
