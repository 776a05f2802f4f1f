"""Webhook triggers: the ``TRIGGER_LABEL`` label and ``/agent-z`` comment commands.

Handlers take ``(event, gh, *, db, settings, queue)``. Our own App's actions and
any bot's comments are ignored, so Agent-Z never triggers itself.
"""

from __future__ import annotations

from typing import Any

from gidgethub import routing, sansio

from agentz_app.commands import (
    CommandTarget,
    handle_comment_command,
    is_own_or_bot,
    issue_for_pull,
    known_issue,
    parse_command,
)
from agentz_app.config import Settings
from agentz_app.logs import get_logger
from agentz_app.store.db import Database
from agentz_app.store.runs import RunQueue
from agentz_app.store.states import Status

router = routing.Router()
log = get_logger(__name__)


def _installation_id(data: dict[str, Any]) -> int | None:
    installation = data.get("installation") or {}
    value = installation.get("id") if isinstance(installation, dict) else None
    return value if isinstance(value, int) else None


def _sender_is_us(data: dict[str, Any], settings: Settings) -> bool:
    sender = data.get("sender") or {}
    return str(sender.get("login", "")).lower() == f"{settings.github_app_slug}[bot]".lower()


@router.register("issues", action="labeled")
async def issue_labeled(
    event: sansio.Event, gh: Any, *, db: Database, settings: Settings, queue: RunQueue, **_: Any
) -> None:
    """Enqueue an issue when a person adds the trigger label (unless a run already answered it)."""
    data = event.data
    label = str((data.get("label") or {}).get("name", ""))
    if label.lower() != settings.trigger_label.lower() or _sender_is_us(data, settings):
        return
    issue = data["issue"]
    repo = data["repository"]["full_name"]
    sender = str((data.get("sender") or {}).get("login", ""))
    if issue.get("state") != "open" or issue.get("pull_request"):
        queue.add_event(None, "trigger_label", repo=repo, issue=issue["number"], user=sender, accepted=False,
                        reason="issue is not open" if issue.get("state") != "open" else "pull request")
        return
    updated_at = str(issue.get("updated_at") or "")
    answered = queue.requested_since(repo, int(issue["number"]), updated_at)
    if answered is not None:
        queue.add_event(answered.id, "trigger_label", repo=repo, issue=issue["number"], user=sender, accepted=False,
                        reason="already answered by this run")
        return
    run, created = queue.enqueue(
        repo,
        int(issue["number"]),
        installation_id=_installation_id(data),
        title=issue.get("title") or "",
        requested_by=sender or None,
        reason=f"label {label!r} added by @{sender}",
        issue_updated_at=updated_at,
    )
    if not created:
        queue.add_event(run.id, "trigger_label", repo=repo, issue=issue["number"], user=sender, accepted=False,
                        reason=f"run already {run.status}")
    log.info("trigger label", repo=repo, issue=issue["number"], run_id=run.id, created=created)


async def _pull_head_ref(gh: Any, repo: str, number: int) -> str | None:
    if gh is None:
        return None
    pull = await gh.getitem(f"/repos/{repo}/pulls/{number}")
    head = pull.get("head") if isinstance(pull, dict) else None
    return str(head.get("ref")) if isinstance(head, dict) and head.get("ref") else None


@router.register("issue_comment", action="created")
async def comment_created(
    event: sansio.Event, gh: Any, *, db: Database, settings: Settings, queue: RunQueue, **_: Any
) -> None:
    """Carry out an ``/agent-z`` command from a person with write access.

    A ``run`` or ``plan`` that a run already answered (its webhook came late or was
    processed twice) is dropped without a reply.
    """
    data = event.data
    comment = data.get("comment") or {}
    if is_own_or_bot(comment, settings):
        return
    command = parse_command(str(comment.get("body") or ""))
    if command is None:
        return
    repo = data["repository"]["full_name"]
    issue = data["issue"]
    user = str((comment.get("user") or {}).get("login", ""))
    number = int(issue["number"])
    title = issue.get("title") or ""
    state = issue.get("state") or "open"
    if issue.get("pull_request"):
        mapped = issue_for_pull(db, repo, number)
        if mapped is None:
            mapped = issue_for_pull(db, repo, number, head_ref=await _pull_head_ref(gh, repo, number) or "")
        if mapped is None:
            queue.add_event(None, "command", command=command.name, user=user, repo=repo, issue=number,
                            accepted=False, reason="pull request is not one of Agent-Z's")
            if gh is not None:
                await gh.post(issue["comments_url"], data={
                    "body": f"@{user} Agent-Z commands work on issues and on Agent-Z's own pull requests."
                })
            return
        number = mapped
        title, state = known_issue(db, repo, number)
    created_at = str(comment.get("created_at") or "")
    answered = queue.requested_since(repo, number, created_at) if command.name in ("run", "plan") else None
    approving = command.name == "run" and answered is not None and answered.status == Status.AWAITING_APPROVAL
    if answered is not None and not approving:
        queue.add_event(answered.id, "command", command=command.name, user=user, repo=repo, issue=number,
                        accepted=False, reason="already answered by this run")
        return
    target = CommandTarget(
        repo=repo,
        issue_number=number,
        title=title,
        installation_id=_installation_id(data),
        comments_url=issue["comments_url"],
        state=state,
        requested_at=max(created_at, str(issue.get("updated_at") or "")),
    )
    await handle_comment_command(gh, db, settings, queue, target=target, command=command, user=user)
