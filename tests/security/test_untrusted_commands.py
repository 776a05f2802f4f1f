"""Commands and trigger labels from bots or from Agent-Z itself never start a run.

Signed deliveries go through the real receiver and inbox into a real queue; the
GitHub side is a fake that records every request.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from agentz_app.config import Settings
from agentz_app.github.signatures import sign
from agentz_app.ingress.inbox import process_pending
from agentz_app.ingress.routers import build_router
from agentz_app.store.db import Database
from agentz_app.store.runs import RunQueue
from agentz_app.web import WEBHOOK_PATH, create_app
from tests.fakes import FakeGitHubApp

REPO = "acme/app"
_ids = itertools.count(1)


def _issue() -> dict[str, Any]:
    return {"number": 7, "title": "Add a flag", "body": "", "state": "open", "labels": [], "assignees": [],
            "user": {"login": "carol"}, "updated_at": "2026-01-01T00:00:00Z",
            "comments_url": f"https://api.github.com/repos/{REPO}/issues/7/comments"}


def comment(body: str, login: str, user_type: str = "User", via_app: int | None = None,
            action: str = "created") -> dict[str, Any]:
    return {
        "action": action, "issue": _issue(),
        "comment": {"id": next(_ids), "body": body, "user": {"login": login, "type": user_type},
                    "updated_at": "2026-01-01T00:00:01Z",
                    "performed_via_github_app": {"id": via_app, "slug": "x"} if via_app else None},
        "repository": {"id": 10, "full_name": REPO, "default_branch": "main"},
        "installation": {"id": 5}, "sender": {"login": login, "type": user_type},
    }


def labeled(label: str, login: str, user_type: str) -> dict[str, Any]:
    return {"action": "labeled", "label": {"name": label}, "issue": _issue(),
            "repository": {"id": 10, "full_name": REPO}, "installation": {"id": 5},
            "sender": {"login": login, "type": user_type}}


async def deliver(aiohttp_client: AiohttpClient, db: Database, settings: Settings, event: str, payload: dict[str, Any],
                  github: FakeGitHubApp) -> None:
    client = await aiohttp_client(create_app(settings, db, process_inbox=False))
    body = json.dumps(payload).encode()
    response = await client.post(WEBHOOK_PATH, data=body, headers={
        "Content-Type": "application/json", "X-GitHub-Event": event, "X-GitHub-Delivery": f"d-{next(_ids)}",
        "X-Hub-Signature-256": sign(settings.webhook_secret(), body)})
    assert response.status == 202
    assert await process_pending(db, settings, github=github, router=build_router()) == 1


def admin_everywhere() -> FakeGitHubApp:
    """Every login is an admin, so only the sender checks can stop a run."""
    github = FakeGitHubApp()
    for login in ("agent-z[bot]", "Agent-Z[bot]", "dependabot[bot]", "renovate", "alice", "mallory"):
        github.client(5).getitem_answers[f"/repos/{REPO}/collaborators/{login}/permission"] = {
            "permission": "admin", "role_name": "admin"}
    return github


@pytest.mark.parametrize(
    ("login", "user_type", "via_app"),
    [
        ("agent-z[bot]", "Bot", None),  # our App's own bot account
        ("Agent-Z[bot]", "User", None),  # the same, with odd case and type
        ("alice", "User", 1),  # a person's comment posted through our App (settings: GITHUB_APP_ID=1)
        ("dependabot[bot]", "Bot", None),  # any other bot
        ("renovate", "Bot", None),  # a bot without the [bot] suffix
    ],
    ids=["own-bot", "own-bot-odd-case", "via-our-app", "other-bot", "bot-type"],
)
async def test_commands_from_bots_or_our_own_app_enqueue_nothing(
    aiohttp_client: AiohttpClient, sqlite_db: Database, settings: Settings, login: str, user_type: str,
    via_app: int | None,
) -> None:
    github = admin_everywhere()
    await deliver(aiohttp_client, sqlite_db, settings, "issue_comment",
                  comment("/agent-z run", login, user_type, via_app), github)
    assert RunQueue(sqlite_db).reads.list_runs() == []
    assert github.client(5).calls == []  # not even a permission lookup or a reply


async def test_edited_comment_that_gains_a_command_from_a_read_only_user_enqueues_nothing(
    aiohttp_client: AiohttpClient, sqlite_db: Database, settings: Settings
) -> None:
    github = FakeGitHubApp()
    github.client(5).getitem_answers[f"/repos/{REPO}/collaborators/mallory/permission"] = {
        "permission": "read", "role_name": "read"}
    await deliver(aiohttp_client, sqlite_db, settings, "issue_comment",
                  comment("/agent-z run", "mallory", action="edited"), github)
    assert RunQueue(sqlite_db).reads.list_runs() == []


async def test_trigger_label_added_by_our_own_app_enqueues_nothing(
    aiohttp_client: AiohttpClient, sqlite_db: Database, settings: Settings
) -> None:
    github = admin_everywhere()
    await deliver(aiohttp_client, sqlite_db, settings, "issues",
                  labeled(settings.trigger_label, f"{settings.github_app_slug}[bot]", "Bot"), github)
    assert RunQueue(sqlite_db).reads.list_runs() == []


async def test_read_only_and_triage_users_enqueue_nothing_and_get_one_reply(
    aiohttp_client: AiohttpClient, sqlite_db: Database, settings: Settings
) -> None:
    github = FakeGitHubApp()
    answers = github.client(5).getitem_answers
    answers[f"/repos/{REPO}/collaborators/eve/permission"] = {"permission": "read", "role_name": "triage"}
    answers[f"/repos/{REPO}/collaborators/nobody/permission"] = {"permission": "none", "role_name": None}
    for login in ("eve", "nobody"):
        await deliver(aiohttp_client, sqlite_db, settings, "issue_comment", comment("/agent-z run", login), github)
    assert RunQueue(sqlite_db).reads.list_runs() == []
    replies = github.client(5).writes("POST")
    assert [reply.url.endswith("/issues/7/comments") for reply in replies] == [True, True]



@pytest.mark.parametrize("kind", ["comment", "label"])
async def test_the_same_deliveries_from_a_maintainer_do_start_a_run(
    aiohttp_client: AiohttpClient, sqlite_db: Database, settings: Settings, kind: str
) -> None:
    github = admin_everywhere()
    if kind == "comment":
        await deliver(aiohttp_client, sqlite_db, settings, "issue_comment", comment("/agent-z run", "alice"), github)
    else:
        await deliver(aiohttp_client, sqlite_db, settings, "issues",
                      labeled(settings.trigger_label, "alice", "User"), github)
    run = RunQueue(sqlite_db).reads.live_run_for_issue(REPO, 7)
    assert run is not None
    assert run.requested_by == "alice"
