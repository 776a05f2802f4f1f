"""The demo's summary: collected from the database and the fake GitHub, rendered as text or JSON."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

CHECK_NAMES = ("Agent-Z / plan", "Agent-Z / review", "Agent-Z / ci-fix", "ci")


@dataclass
class IssueOutcome:
    number: int
    title: str
    verdict: str | None
    run_status: str | None
    pr: int | None
    check_runs: dict[str, str] = field(default_factory=dict)
    status_comments: int = 0


@dataclass
class DemoReport:
    issues: list[IssueOutcome]
    github_writes: int
    seconds: float
    ok: bool = True
    workspace: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The documented JSON shape of ``agentz demo --json``."""
        data: dict[str, Any] = {
            "issues": [asdict(issue) for issue in self.issues],
            "github_writes": self.github_writes,
            "seconds": round(self.seconds, 1),
            "ok": self.ok,
        }
        if self.workspace:
            data["workspace"] = self.workspace
        return data


_FAILURE_LINE = re.compile(r"^(FAIL|ERROR|FAILED)\b|Error\b|No module named|not found")
_EXIT = re.compile(r"`(?P<command>[^`]*)` exited with (?P<code>-?\d+)")


def ci_failure(check: Mapping[str, Any]) -> str:
    """One line on a failed CI check run: its name, the step (command) and exit code, and the telling line."""
    output = check.get("output") or {}
    summary = str(output.get("summary") or "")
    exit_match = _EXIT.search(summary)
    step = f"`{exit_match['command']}` exited with {exit_match['code']}" if exit_match else str(output.get("title"))
    body = summary.split("```", 2)[1] if summary.count("```") >= 2 else summary
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    telling = next((line for line in lines if _FAILURE_LINE.search(line)), lines[-1] if lines else "")
    return f"{check.get('name', 'ci')}: {step}" + (f": {telling[:200]}" if telling else "")


def verdict_for(run_status: str | None, stored_verdict: str | None) -> str | None:
    """``ran`` when a run exists, otherwise the scheduler's recorded verdict."""
    if run_status is not None:
        return "ran"
    return stored_verdict


def render_table(report: DemoReport) -> str:
    """A fixed-width summary table, one issue per row."""
    headers = ("#", "title", "verdict", "run", "PR", "check runs", "status comments")
    rows = [headers]
    for issue in report.issues:
        checks = ", ".join(f"{name.removeprefix('Agent-Z / ')}={conclusion}"
                           for name, conclusion in sorted(issue.check_runs.items())) or "-"
        rows.append((
            str(issue.number),
            issue.title if len(issue.title) <= 34 else issue.title[:33] + "…",
            issue.verdict or "-",
            issue.run_status or "-",
            f"#{issue.pr}" if issue.pr else "-",
            checks,
            str(issue.status_comments),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(headers))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    lines.append("")
    lines.append(f"GitHub content-creating requests: {report.github_writes}    time: {report.seconds:.1f}s")
    return "\n".join(lines)
