"""The fake GitHub over real HTTP: REST round trips, signed webhooks, faults and persistence."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agentz_app.fakehub import FakeHub
from agentz_app.fakehub.faults import FaultConfig
from tests.fakehub_fixtures import (
    WEBHOOK_SECRET,
    WebhookSink,
    app_jwt,
    app_private_key,
    fakehub,
    installation_token,
    push_branch,
    webhook_sink,
)

__all__ = ["app_private_key", "fakehub", "webhook_sink"]  # fixtures used by name

REPO = "acme/widgets"
FILES = {"README.md": "# widgets\n", "widgets/__init__.py": "VALUE = 1\n"}


@dataclass
class Api:
    session: aiohttp.ClientSession
    hub: FakeHub
    token: str

    async def call(self, method: str, path: str, *, body: Any = None, token: str | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
        hdrs = {"Authorization": f"token {token or self.token}", "Accept": "application/vnd.github+json"}
        hdrs.update(headers or {})
        async with self.session.request(method, self.hub.api_url + path, json=body, headers=hdrs) as response:
            text = await response.text()
            return response.status, response.headers, json.loads(text) if text else None


@pytest.fixture
async def api(fakehub: FakeHub, app_private_key: str) -> AsyncIterator[Api]:
    await fakehub.repos.create(REPO, FILES, ci_command=None)
    async with aiohttp.ClientSession() as session:
        token = await installation_token(session, fakehub, app_private_key, REPO)
        yield Api(session, fakehub, token)


async def idle(hub: FakeHub) -> None:
    """Wait until the hub has no CI job or webhook delivery left; fail after 30 seconds."""
    async with asyncio.timeout(30):
        await hub.wait_idle()


async def test_issue_round_trip_create_list_patch_comment_label(api: Api) -> None:
    status, _, issue = await api.call("POST", f"/repos/{REPO}/issues", body={"title": "Add x", "body": "please"})
    assert status == 201
    assert issue["number"] == 1
    assert issue["state"] == "open"
    assert issue["user"]["login"] == "agent-z-test[bot]"
    assert issue["user"]["type"] == "Bot"

    status, _, listed = await api.call("GET", f"/repos/{REPO}/issues")
    assert status == 200
    assert [i["number"] for i in listed] == [1]

    status, _, patched = await api.call("PATCH", f"/repos/{REPO}/issues/1",
                                        body={"title": "Add y", "state": "closed", "state_reason": "not_planned"})
    assert status == 200
    assert patched["title"] == "Add y"
    assert (patched["state"], patched["state_reason"]) == ("closed", "not_planned")
    assert patched["updated_at"] > issue["updated_at"]

    status, _, comment = await api.call("POST", f"/repos/{REPO}/issues/1/comments", body={"body": "status: ok"})
    assert status == 201
    assert comment["performed_via_github_app"]["slug"] == "agent-z-test"
    status, _, edited = await api.call("PATCH", f"/repos/{REPO}/issues/comments/{comment['id']}",
                                       body={"body": "status: done"})
    assert status == 200
    assert edited["body"] == "status: done"
    status, _, comments = await api.call("GET", f"/repos/{REPO}/issues/1/comments")
    assert [c["body"] for c in comments] == ["status: done"]

    status, _, labels = await api.call("POST", f"/repos/{REPO}/issues/1/labels", body={"labels": ["agent-z", "bug"]})
    assert status == 200
    assert sorted(lbl["name"] for lbl in labels) == ["agent-z", "bug"]
    status, _, labels = await api.call("DELETE", f"/repos/{REPO}/issues/1/labels/bug")
    assert status == 200
    assert [lbl["name"] for lbl in labels] == ["agent-z"]
    status, _, _ = await api.call("DELETE", f"/repos/{REPO}/issues/1/labels/bug")
    assert status == 404

    status, _, closed = await api.call("GET", f"/repos/{REPO}/issues?state=closed&labels=agent-z")
    assert [i["number"] for i in closed] == [1]
    status, _, _ = await api.call("DELETE", f"/repos/{REPO}/issues/comments/{comment['id']}")
    assert status == 204


async def test_missing_issue_and_repository_answer_404(api: Api) -> None:
    assert (await api.call("GET", f"/repos/{REPO}/issues/99"))[0] == 404
    assert (await api.call("GET", "/repos/acme/nothing"))[0] == 404


async def test_assignees_and_reactions(api: Api) -> None:
    api.hub.issues.create(REPO, "Task", user="alice")
    status, _, issue = await api.call("POST", f"/repos/{REPO}/issues/1/assignees", body={"assignees": ["bob"]})
    assert status == 201
    assert [a["login"] for a in issue["assignees"]] == ["bob"]
    status, _, issue = await api.call("DELETE", f"/repos/{REPO}/issues/1/assignees", body={"assignees": ["bob"]})
    assert status == 200
    assert issue["assignees"] == []
    status, _, _ = await api.call("POST", f"/repos/{REPO}/issues/1/reactions", body={"content": "eyes"})
    assert status == 201
    status, _, _ = await api.call("POST", f"/repos/{REPO}/issues/1/reactions", body={"content": "eyes"})
    assert status == 200
    assert (await api.call("POST", f"/repos/{REPO}/issues/1/reactions", body={"content": "wave"}))[0] == 422


async def test_webhooks_are_signed_and_carry_github_fields(api: Api, webhook_sink: WebhookSink) -> None:
    api.hub.issues.create(REPO, "Bug", "details", user="alice", labels=["bug"])
    opened = await webhook_sink.wait_for("issues", "opened")
    assert opened.signature_ok
    expected = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), opened.body, hashlib.sha256).hexdigest()
    assert opened.headers["X-Hub-Signature-256"] == expected
    assert opened.headers["User-Agent"] == "GitHub-Hookshot/fake"
    assert opened.headers["X-GitHub-Hook-ID"]
    payload = opened.payload
    assert payload["repository"]["full_name"] == REPO
    assert payload["repository"]["default_branch"] == "main"
    assert payload["repository"]["owner"]["login"] == "acme"
    assert payload["installation"]["id"]
    assert payload["sender"]["login"] == "alice"
    assert payload["issue"]["labels"] == [{"id": payload["issue"]["labels"][0]["id"], "node_id": payload["issue"][
        "labels"][0]["node_id"], "url": payload["issue"]["labels"][0]["url"], "name": "bug", "color": "ededed",
        "default": False, "description": None}]
    assert payload["issue"]["performed_via_github_app"] is None

    await api.call("POST", f"/repos/{REPO}/issues/1/labels", body={"labels": ["agent-z"]})
    labeled = await webhook_sink.wait_for("issues", "labeled")
    assert labeled.payload["label"]["name"] == "agent-z"
    assert labeled.payload["sender"]["login"] == "agent-z-test[bot]"
    assert labeled.payload["issue"]["updated_at"] > payload["issue"]["updated_at"]

    api.hub.comments.create(REPO, 1, "/agent-z run", user="bob")
    comment = await webhook_sink.wait_for("issue_comment", "created")
    assert comment.payload["comment"]["body"] == "/agent-z run"
    assert comment.payload["issue"]["number"] == 1
    assert "pull_request" not in comment.payload["issue"]
    guids = [d.guid for d in webhook_sink.deliveries]
    assert len(guids) == len(set(guids))


async def test_test_user_header_acts_as_a_human_and_is_not_counted(api: Api, webhook_sink: WebhookSink) -> None:
    api.hub.issues.create(REPO, "Task")
    api.hub.reset_counters()
    status, _, comment = await api.call("POST", f"/repos/{REPO}/issues/1/comments", body={"body": "hi"},
                                        headers={"X-Fakehub-As": "carol"})
    assert status == 201
    assert comment["user"]["login"] == "carol"
    assert comment["performed_via_github_app"] is None
    assert api.hub.counters()["writes"] == 0


async def test_permission_endpoint_reports_roles(api: Api) -> None:
    api.hub.repos.set_permission(REPO, "maint", "maintain")
    api.hub.repos.set_permission(REPO, "reader", "read")
    status, _, owner = await api.call("GET", f"/repos/{REPO}/collaborators/acme/permission")
    assert status == 200
    assert owner["permission"] == "admin"
    assert owner["user"]["login"] == "acme"
    _, _, maint = await api.call("GET", f"/repos/{REPO}/collaborators/maint/permission")
    assert (maint["permission"], maint["role_name"]) == ("write", "maintain")
    _, _, reader = await api.call("GET", f"/repos/{REPO}/collaborators/reader/permission")
    assert reader["permission"] == "read"
    assert reader["user"]["permissions"]["push"] is False


async def test_permission_endpoint_answers_like_github_for_outsiders_unknown_users_and_bots(api: Api) -> None:
    api.hub.repos.add_user("stranger")  # a GitHub user who is no collaborator of this public repository
    status, _, stranger = await api.call("GET", f"/repos/{REPO}/collaborators/stranger/permission")
    assert status == 200
    assert (stranger["permission"], stranger["role_name"]) == ("read", "read")
    status, _, _ = await api.call("GET", f"/repos/{REPO}/collaborators/no-such-user/permission")
    assert status == 404
    api.hub.repos.add_user("github-actions[bot]")
    status, _, _ = await api.call("GET", f"/repos/{REPO}/collaborators/github-actions%5Bbot%5D/permission")
    assert status == 404


async def test_pull_request_duplicate_head_is_rejected(api: Api, tmp_path: Path) -> None:
    await push_branch(api.hub, tmp_path, "feature", {"widgets/x.py": "X = 1\n"})
    body = {"title": "Add x", "head": "feature", "base": "main", "body": "Fixes #1"}
    status, _, pull = await api.call("POST", f"/repos/{REPO}/pulls", body=body)
    assert status == 201
    assert pull["head"]["ref"] == "feature"
    assert pull["base"]["ref"] == "main"
    assert pull["head"]["sha"] == await api.hub.repos.resolve_ref(REPO, "feature")
    status, _, err = await api.call("POST", f"/repos/{REPO}/pulls", body=body)
    assert status == 422
    assert "already exists" in err["errors"][0]["message"]
    status, _, found = await api.call("GET", f"/repos/{REPO}/pulls?head=acme:feature&state=open")
    assert [p["number"] for p in found] == [pull["number"]]
    _, _, issues = await api.call("GET", f"/repos/{REPO}/issues")
    assert "pull_request" in issues[0]
    status, _, files = await api.call("GET", f"/repos/{REPO}/pulls/{pull['number']}/files")
    assert [f["filename"] for f in files] == ["widgets/x.py"]
    assert files[0]["status"] == "added"
    assert (await api.call("POST", f"/repos/{REPO}/pulls", body={**body, "head": "nope"}))[0] == 422


async def test_reviews_and_inline_comments(api: Api, tmp_path: Path, webhook_sink: WebhookSink) -> None:
    await push_branch(api.hub, tmp_path, "feature", {"a.py": "A = 1\n"})
    _, _, pull = await api.call("POST", f"/repos/{REPO}/pulls", body={"title": "A", "head": "feature", "base": "main"})
    n = pull["number"]
    status, _, err = await api.call("POST", f"/repos/{REPO}/pulls/{n}/reviews", body={"event": "APPROVE"})
    assert status == 422
    assert "your own pull request" in err["errors"][0]
    review = {"event": "REQUEST_CHANGES", "body": "fix it",
              "comments": [{"path": "a.py", "line": 1, "body": "rename A"}]}
    status, _, made = await api.call("POST", f"/repos/{REPO}/pulls/{n}/reviews", body=review,
                                     headers={"X-Fakehub-As": "alice"})
    assert status == 200
    assert made["state"] == "CHANGES_REQUESTED"
    _, _, inline = await api.call("GET", f"/repos/{REPO}/pulls/{n}/comments")
    assert [(c["path"], c["body"]) for c in inline] == [("a.py", "rename A")]
    _, _, reviews = await api.call("GET", f"/repos/{REPO}/pulls/{n}/reviews")
    assert [r["user"]["login"] for r in reviews] == ["alice"]
    _, _, of_review = await api.call("GET", f"/repos/{REPO}/pulls/{n}/reviews/{made['id']}/comments")
    assert [c["pull_request_review_id"] for c in of_review] == [made["id"]]
    submitted = await webhook_sink.wait_for("pull_request_review", "submitted")
    assert submitted.payload["review"]["state"] == "CHANGES_REQUESTED"


async def test_check_run_limits_and_updates(api: Api, webhook_sink: WebhookSink) -> None:
    sha = await api.hub.repos.resolve_ref(REPO, "main")
    base = {"name": "Agent-Z / plan", "head_sha": sha, "status": "in_progress", "external_id": "run-1"}
    status, _, _ = await api.call("POST", f"/repos/{REPO}/check-runs",
                                  body={**base, "output": {"title": "t", "summary": "x" * 65536}})
    assert status == 422
    notes = [{"path": "a.py", "start_line": 1, "end_line": 1, "annotation_level": "warning", "message": "m"}] * 51
    status, _, _ = await api.call("POST", f"/repos/{REPO}/check-runs",
                                  body={**base, "output": {"title": "t", "summary": "s", "annotations": notes}})
    assert status == 422
    actions = [{"label": "Retry", "description": "Run again", "identifier": "retry"}]
    status, _, run = await api.call("POST", f"/repos/{REPO}/check-runs",
                                    body={**base, "actions": actions,
                                          "output": {"title": "t", "summary": "x" * 65535,
                                                     "annotations": notes[:50]}})
    assert status == 201
    assert run["status"] == "in_progress"
    assert run["output"]["annotations_count"] == 50
    status, _, _ = await api.call("POST", f"/repos/{REPO}/check-runs", body={**base, "actions": actions * 4})
    assert status == 422
    status, _, done = await api.call("PATCH", f"/repos/{REPO}/check-runs/{run['id']}",
                                     body={"conclusion": "success", "output": {"title": "ok", "summary": "done"}})
    assert status == 200
    assert (done["status"], done["conclusion"]) == ("completed", "success")
    completed = await webhook_sink.wait_for("check_run", "completed")
    assert completed.payload["check_run"]["external_id"] == "run-1"
    _, _, listed = await api.call("GET", f"/repos/{REPO}/commits/main/check-runs?check_name=Agent-Z%20/%20plan")
    assert listed["total_count"] == 1
    assert listed["check_runs"][0]["id"] == run["id"]
    _, _, suites = await api.call("GET", f"/repos/{REPO}/commits/{sha}/check-suites")
    assert suites["check_suites"][0]["conclusion"] == "success"
    status, _, combined = await api.call("GET", f"/repos/{REPO}/commits/{sha}/status")
    assert status == 200
    assert combined["sha"] == sha

    await idle(api.hub)
    api.hub.checks.request_action(REPO, run["id"], "retry", user="alice")
    clicked = await webhook_sink.wait_for("check_run", "requested_action")
    assert clicked.payload["requested_action"] == {"identifier": "retry"}


async def test_etag_answers_304_when_unchanged(api: Api) -> None:
    api.hub.issues.create(REPO, "One")
    status, headers, _ = await api.call("GET", f"/repos/{REPO}/issues")
    etag = headers["ETag"]
    status, headers, body = await api.call("GET", f"/repos/{REPO}/issues", headers={"If-None-Match": etag})
    assert status == 304
    assert body is None
    assert headers["ETag"] == etag
    api.hub.issues.create(REPO, "Two")
    status, _, _ = await api.call("GET", f"/repos/{REPO}/issues", headers={"If-None-Match": etag})
    assert status == 200
    assert api.hub.counters()["not_modified"] == 1


async def test_lists_paginate_with_link_headers(api: Api) -> None:
    for i in range(5):
        api.hub.issues.create(REPO, f"Issue {i}")
    _, headers, page1 = await api.call("GET", f"/repos/{REPO}/issues?per_page=2")
    assert [i["number"] for i in page1] == [5, 4]
    assert 'rel="next"' in headers["Link"]
    assert "page=2" in headers["Link"]
    assert 'rel="last"' in headers["Link"]
    _, headers, page3 = await api.call("GET", f"/repos/{REPO}/issues?per_page=2&page=3")
    assert [i["number"] for i in page3] == [1]
    assert 'rel="next"' not in headers["Link"]
    assert 'rel="prev"' in headers["Link"]


async def test_app_endpoints_require_a_jwt_signed_by_the_app_key(api: Api, app_private_key: str) -> None:
    good = {"Authorization": f"Bearer {app_jwt(app_private_key)}"}
    status, _, app = await api.call("GET", "/app", headers=good)
    assert status == 200
    assert app["slug"] == "agent-z-test"
    from tests.fakehub_fixtures import make_private_key
    bad = {"Authorization": f"Bearer {app_jwt(make_private_key())}"}
    assert (await api.call("GET", "/app", headers=bad))[0] == 401
    assert (await api.call("GET", "/app"))[0] == 401
    status, _, installs = await api.call("GET", "/app/installations", headers=good)
    assert status == 200
    assert installs[0]["account"]["login"] == "acme"
    status, _, repos = await api.call("GET", "/installation/repositories")
    assert status == 200
    assert [r["full_name"] for r in repos["repositories"]] == [REPO]
    assert (await api.call("GET", f"/repos/{REPO}", token="ghs_unknown"))[0] == 401


async def test_write_counter_excludes_tokens_and_hooks(api: Api, app_private_key: str) -> None:
    api.hub.reset_counters()
    await installation_token(api.session, api.hub, app_private_key, REPO)
    await api.call("POST", f"/repos/{REPO}/issues", body={"title": "x"})
    await api.call("GET", f"/repos/{REPO}/issues/1")
    async with api.session.post(f"{api.hub.api_url}/_fakehub/repos/{REPO}/issues", json={"title": "y"}) as r:
        assert r.status == 201
    counters = api.hub.counters()
    assert counters["writes"] == 1
    assert counters["requests"] == {"GET": 2, "POST": 2}


async def test_server_error_fault_rate(api: Api) -> None:
    api.hub.faults.configure(FaultConfig(seed=7, server_error_rate=1.0))
    status, _, body = await api.call("GET", f"/repos/{REPO}")
    assert status == 502
    assert body["message"] == "Server Error"
    api.hub.faults.configure(FaultConfig(seed=7, server_error_rate=0.5))
    statuses = [(await api.call("GET", f"/repos/{REPO}"))[0] for _ in range(20)]
    assert set(statuses) == {200, 502}
    api.hub.faults.configure(FaultConfig(seed=7, server_error_rate=0.5))
    again = [(await api.call("GET", f"/repos/{REPO}"))[0] for _ in range(20)]
    assert again == statuses


async def test_rate_limit_faults_carry_github_headers(api: Api) -> None:
    async with api.session.post(f"{api.hub.api_url}/_fakehub/faults",
                                json={"secondary_limit_next": 1, "primary_limit_next": 1,
                                      "retry_after_seconds": 3}) as r:
        assert r.status == 200
    status, headers, body = await api.call("GET", f"/repos/{REPO}")
    assert status in (403, 429)
    assert headers["retry-after"] == "3"
    assert "secondary rate limit" in body["message"]
    status, headers, _ = await api.call("GET", f"/repos/{REPO}")
    assert status == 403
    assert headers["x-ratelimit-remaining"] == "0"
    assert int(headers["x-ratelimit-reset"]) > 0
    assert (await api.call("GET", f"/repos/{REPO}"))[0] == 200
    async with api.session.post(f"{api.hub.api_url}/_fakehub/faults", json={"drop_rate": 2}) as r:
        assert r.status == 422


async def test_duplicate_delivery_is_sent_twice(api: Api, webhook_sink: WebhookSink) -> None:
    api.hub.faults.configure(FaultConfig(duplicate_next=1))
    api.hub.issues.create(REPO, "Dup")
    await idle(api.hub)
    opened = webhook_sink.of("issues", "opened")
    assert len(opened) == 2
    assert opened[0].guid == opened[1].guid


async def test_out_of_order_deliveries_swap_a_pair(api: Api, webhook_sink: WebhookSink) -> None:
    api.hub.faults.configure(FaultConfig(out_of_order_rate=1.0))
    api.hub.issues.create(REPO, "First")
    api.hub.issues.create(REPO, "Second")
    await idle(api.hub)
    assert [d.payload["issue"]["title"] for d in webhook_sink.of("issues", "opened")] == ["Second", "First"]


async def test_dropped_delivery_is_recorded_failed_and_redelivered(api: Api, webhook_sink: WebhookSink,
                                                                   app_private_key: str) -> None:
    api.hub.faults.configure(FaultConfig(drop_next=1))
    api.hub.issues.create(REPO, "Lost")
    await idle(api.hub)
    assert webhook_sink.of("issues", "opened") == []
    app_headers = {"Authorization": f"Bearer {app_jwt(app_private_key)}"}
    status, _, deliveries = await api.call("GET", "/app/hook/deliveries", headers=app_headers)
    failed = [d for d in deliveries if d["event"] == "issues" and d["action"] == "opened"]
    assert status == 200
    assert len(failed) == 1
    assert failed[0]["status_code"] >= 400
    assert set(failed[0]) >= {"id", "guid", "status_code", "event", "action", "delivered_at", "redelivery"}
    status, _, _ = await api.call("POST", f"/app/hook/deliveries/{failed[0]['id']}/attempts", headers=app_headers)
    assert status == 202
    await idle(api.hub)
    redelivered = webhook_sink.of("issues", "opened")
    assert len(redelivered) == 1
    assert redelivered[0].guid == failed[0]["guid"]
    _, _, deliveries = await api.call("GET", "/app/hook/deliveries", headers=app_headers)
    assert any(d["redelivery"] and d["status_code"] == 202 for d in deliveries)


async def test_receiver_errors_are_retried_and_every_attempt_recorded(api: Api, webhook_sink: WebhookSink) -> None:
    webhook_sink.fail_next = 2
    api.hub.issues.create(REPO, "Retry me")
    await idle(api.hub)
    assert len(webhook_sink.of("issues", "opened")) == 1
    attempts = [d for d in api.hub.state.data["deliveries"].values() if d["action"] == "opened"]
    assert [d["status_code"] for d in attempts] == [503, 503, 202]


async def test_manifest_code_converts_to_app_credentials(api: Api) -> None:
    async with api.session.post(f"{api.hub.api_url}/_fakehub/app-manifests",
                                json={"manifest": {"name": "My Agent", "url": "http://x"}}) as r:
        code = (await r.json())["code"]
    status, _, app = await api.call("POST", f"/app-manifests/{code}/conversions")
    assert status == 201
    assert app["slug"] == "my-agent"
    assert app["pem"].startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert {"id", "webhook_secret", "client_id", "client_secret", "html_url"} <= set(app)
    status, _, me = await api.call("GET", "/app", headers={"Authorization": f"Bearer {app_jwt(app['pem'], app['id'])}"})
    assert status == 200
    assert me["id"] == app["id"]
    assert (await api.call("POST", f"/app-manifests/{code}/conversions"))[0] == 404


async def test_state_survives_restart(tmp_path: Path, webhook_sink: WebhookSink) -> None:
    state_file = tmp_path / "state.json"
    hub = FakeHub(tmp_path / "root", webhook_url=webhook_sink.url, webhook_secret=WEBHOOK_SECRET,
                  state_path=state_file)
    await hub.start()
    await hub.repos.create(REPO, FILES, ci_command=None)
    hub.issues.create(REPO, "Persist me", labels=["agent-z"])
    hub.comments.create(REPO, 1, "hello", user="alice")
    await idle(hub)
    await hub.stop()

    again = FakeHub(tmp_path / "root", webhook_url=webhook_sink.url, webhook_secret=WEBHOOK_SECRET,
                    state_path=state_file)
    await again.start()
    try:
        issue = again.issues.get(REPO, 1)
        assert issue["title"] == "Persist me"
        assert issue["comments"] == 1
        assert [lbl["name"] for lbl in issue["labels"]] == ["agent-z"]
        assert again.issues.create(REPO, "Next")["number"] == 2
        assert again.state.data["deliveries"]
        sha = await push_branch(again, tmp_path, "after-restart", {"x.txt": "x\n"})
        await webhook_sink.wait_for("push", where=lambda d: d.payload["after"] == sha)
    finally:
        await again.stop()


async def test_gidgethub_client_paginates_and_writes(api: Api) -> None:
    from gidgethub.aiohttp import GitHubAPI

    for i in range(3):
        api.hub.issues.create(REPO, f"Issue {i}")
    gh = GitHubAPI(api.session, "agent-z-test", oauth_token=api.token, base_url=api.hub.api_url)
    titles = [issue["title"] async for issue in gh.getiter(f"/repos/{REPO}/issues?state=open&per_page=2")]
    assert titles == ["Issue 2", "Issue 1", "Issue 0"]
    comment = await gh.post(f"/repos/{REPO}/issues/1/comments", data={"body": "queued"})
    assert comment["user"]["login"] == "agent-z-test[bot]"
    perm = await gh.getitem(f"/repos/{REPO}/collaborators/acme/permission")
    assert perm["permission"] == "admin"


async def test_issue_urls_point_at_working_endpoints(api: Api) -> None:
    api.hub.issues.create(REPO, "Task", user="alice")
    _, _, issue = await api.call("GET", f"/repos/{REPO}/issues/1")
    path = issue["comments_url"].removeprefix(api.hub.api_url)
    status, _, comment = await api.call("POST", path, body={"body": "hello"})
    assert status == 201
    assert comment["body"] == "hello"
    assert (await api.call("GET", issue["url"].removeprefix(api.hub.api_url)))[0] == 200
