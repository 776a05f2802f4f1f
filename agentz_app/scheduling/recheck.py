"""Re-read an issue from GitHub right before development starts.

Snapshots can lag: between queueing and developing, someone may close the issue,
take it, label it blocked, or open their own pull request. The pipeline calls
:func:`recheck_before_development` and cancels the run with the returned reason.

A forced run (``agentz enqueue --force``, ``agentz issue``, or an issue the Scheduler
Agent rated high-risk that ``--force`` admitted) is developed even when the issue
carries one of ``SCHEDULER_BLOCK_LABELS``. The safety checks apply to every run, forced
or not: the issue must still be an open issue (not a pull request), assigned to nobody
but Agent-Z, with no open pull request by someone else addressing it.
"""

from __future__ import annotations

from typing import Any

from gidgethub.abc import GitHubAPI

from agentz_app.config import Settings
from agentz_app.domain.dependencies import IssueRef
from agentz_app.domain.gates import PullView


def _login(user: object) -> str:
    return str(user.get("login", "")) if isinstance(user, dict) else ""


def _label_names(issue: dict[str, Any]) -> list[str]:
    labels = issue.get("labels") or []
    return [str(label.get("name", "")) if isinstance(label, dict) else str(label) for label in labels]


def issue_problem(issue: Any, settings: Settings, *, force: bool = False) -> str | None:
    """Why a freshly read issue must not be developed, or None (pure); ``force`` ignores block labels."""
    if not isinstance(issue, dict):
        return "GitHub returned an unreadable issue"
    if issue.get("pull_request"):
        return "it is a pull request"
    if issue.get("state") != "open":
        return f"the issue was {issue.get('state', 'closed')} meanwhile"
    own = f"{settings.github_app_slug}[bot]".lower()
    others = [_login(user) for user in issue.get("assignees") or [] if _login(user).lower() != own]
    if others:
        return "the issue was assigned to " + ", ".join(others)
    if not force:
        blocking = {name.lower() for name in settings.scheduler_block_labels}
        label = next((name for name in _label_names(issue) if name.lower() in blocking), None)
        if label is not None:
            return f"the issue has label {label!r} (enqueue it with --force to develop it anyway)"
    return None


def foreign_pull(pulls: list[Any], issue: IssueRef, *, run_branch: str) -> int | None:
    """The number of an open pull request referencing ``issue`` that is not ours (pure)."""
    for pull in pulls:
        if not isinstance(pull, dict) or pull.get("state", "open") != "open":
            continue
        head = pull.get("head") or {}
        if head.get("ref") == run_branch:
            continue
        view = PullView(
            repo=issue.repo,
            number=int(pull.get("number", 0)),
            title=pull.get("title") or "",
            body=pull.get("body") or "",
            head_ref=head.get("ref") or "",
        )
        if view.references(issue):
            return view.number
    return None


async def recheck_before_development(
    gh: GitHubAPI, settings: Settings, repo: str, issue_number: int, *, run_branch: str, force: bool = False
) -> str | None:
    """Read the issue and open PRs from GitHub now; a cancellation reason, or None to go on."""
    issue = await gh.getitem(f"/repos/{repo}/issues/{issue_number}")
    problem = issue_problem(issue, settings, force=force)
    if problem is not None:
        return problem
    pulls = [pull async for pull in gh.getiter(f"/repos/{repo}/pulls?state=open&per_page=100")]
    number = foreign_pull(pulls, IssueRef(repo, issue_number), run_branch=run_branch)
    if number is not None:
        return f"open pull request #{number} already addresses the issue"
    return None


async def apply_skip_label(gh: GitHubAPI, repo: str, number: int, settings: Settings) -> str | None:
    """Add the first ``SKIP_LABELS`` label so other tools leave the issue alone; returns it."""
    if not settings.skip_labels:
        return None
    label = settings.skip_labels[0]
    await gh.post(f"/repos/{repo}/issues/{number}/labels", data={"labels": [label]})
    return label
