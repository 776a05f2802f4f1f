"""A signed webhook POSTed to the real receiver ends as a queued run in a real database."""

from __future__ import annotations

import json
import uuid
from typing import Any

from pytest_aiohttp import AiohttpClient

from agentz_app.config import Settings
from agentz_app.github.signatures import sign
from agentz_app.ingress.inbox import process_pending
from agentz_app.ingress.routers import build_router
from agentz_app.store.db import Database
from agentz_app.store.models import now
from agentz_app.store.runs import RunQueue
from agentz_app.store.trust import save_permission
from agentz_app.web import WEBHOOK_PATH, create_app
from tests.fakes import FakeGitHubApp
from tests.waiting import wait_for

REPO = "acme/app"


def _issue(number: int) -> dict[str, Any]:
    return {
        "number": number, "title": "Add a flag", "body": "Please.", "state": "open", "labels": [],
        "assignees": [], "user": {"login": "carol"}, "updated_at": "2026-01-01T00:00:00Z",
        "comments_url": f"https://api.github.com/repos/{REPO}/issues/{number}/comments",
    }


def comment_payload(body: str, user: str) -> dict[str, Any]:
    return {
        "action": "created",
        "issue": _issue(7),
        "comment": {"id": 555, "body": body, "user": {"login": user, "type": "User"},
                    "updated_at": "2026-01-01T00:00:01Z", "performed_via_github_app": None},
        "repository": {"id": 10, "full_name": REPO, "default_branch": "main", "private": False},
        "installation": {"id": 5},
        "sender": {"login": user, "type": "User"},
    }


async def post_delivery(client: Any, settings: Settings, event: str, payload: dict[str, Any]) -> int:
    body = json.dumps(payload).encode()
    response = await client.post(WEBHOOK_PATH, data=body, headers={
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(settings.webhook_secret(), body),
    })
    return int(response.status)


async def test_signed_run_comment_becomes_a_queued_run(
    aiohttp_client: AiohttpClient, db: Database, settings: Settings
) -> None:
    client = await aiohttp_client(create_app(settings, db, process_inbox=False))
    assert await post_delivery(client, settings, "issue_comment", comment_payload("/agent-z run", "alice")) == 202
    github = FakeGitHubApp()
    github.client(5).getitem_answers[f"/repos/{REPO}/collaborators/alice/permission"] = {
        "permission": "write", "role_name": "write"}
    assert await process_pending(db, settings, github=github, router=build_router()) == 1
    run = RunQueue(db).reads.live_run_for_issue(REPO, 7)
    assert run is not None
    assert run.status == "queued"
    assert run.requested_by == "alice"
    assert github.client(5).writes() == []


async def test_read_only_comment_through_the_receiver_queues_nothing(
    aiohttp_client: AiohttpClient, db: Database, settings: Settings
) -> None:
    client = await aiohttp_client(create_app(settings, db, process_inbox=False))
    assert await post_delivery(client, settings, "issue_comment", comment_payload("/agent-z run", "eve")) == 202
    github = FakeGitHubApp()
    github.client(5).getitem_answers[f"/repos/{REPO}/collaborators/eve/permission"] = {
        "permission": "read", "role_name": "read"}
    await process_pending(db, settings, github=github, router=build_router())
    assert RunQueue(db).reads.list_runs() == []
    [reply] = github.client(5).writes("POST")
    assert reply.url.endswith("/issues/7/comments")


async def test_trigger_label_through_the_running_inbox_becomes_a_queued_run(
    aiohttp_client: AiohttpClient, sqlite_db: Database, settings: Settings
) -> None:
    client = await aiohttp_client(create_app(settings, sqlite_db, process_inbox=True))
    # The inbox here has no GitHub client: alice's permission was looked up a moment ago.
    save_permission(sqlite_db, REPO, "alice", permission="write", role_name="write", at=now())
    payload = {
        "action": "labeled", "label": {"name": settings.trigger_label}, "issue": _issue(9),
        "repository": {"id": 10, "full_name": REPO}, "installation": {"id": 5},
        "sender": {"login": "alice", "type": "User"},
    }
    assert await post_delivery(client, settings, "issues", payload) == 202
    queue = RunQueue(sqlite_db)
    run = await wait_for(lambda: queue.reads.live_run_for_issue(REPO, 9), timeout=10, what="a run queued for issue 9")
    assert run.status == "queued"
