"""Fakehub refuses what GitHub refuses: byte limits, annotation rules, App permissions, manifests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agentz_app.fakehub import FakeHub
from tests.fakehub_fixtures import (
    WebhookSink,
    app_private_key,
    fakehub,
    installation_token,
    push_branch,
    webhook_sink,
)

__all__ = ["app_private_key", "fakehub", "webhook_sink"]  # fixtures used by name

REPO = "acme/widgets"
FILES = {"README.md": "# widgets\n"}
NOTE = {"path": "README.md", "start_line": 1, "end_line": 1, "annotation_level": "warning", "message": "m"}


@dataclass
class Api:
    session: aiohttp.ClientSession
    hub: FakeHub
    token: str
    sha: str

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"token {self.token}", "Accept": "application/vnd.github+json"}
        async with self.session.request(method, self.hub.api_url + path, json=body, headers=headers) as response:
            return response.status, await response.json(content_type=None)

    async def check_run(self, **fields: Any) -> tuple[int, Any]:
        return await self.call("POST", f"/repos/{REPO}/check-runs",
                               {"name": "Agent-Z / review", "head_sha": self.sha, **fields})


@pytest.fixture
async def api(fakehub: FakeHub, app_private_key: str) -> AsyncIterator[Api]:
    await fakehub.repos.create(REPO, FILES, ci_command=None)
    sha = await fakehub.repos.resolve_ref(REPO, "main")
    async with aiohttp.ClientSession() as session:
        yield Api(session, fakehub, await installation_token(session, fakehub, app_private_key, REPO), sha)


async def test_check_run_summary_is_limited_in_utf8_bytes_not_characters(api: Api) -> None:
    status, body = await api.check_run(output={"title": "t", "summary": "é" * 35_000})  # 70,000 bytes
    assert status == 422
    assert "summary exceeds a maximum bytesize of 65535" in str(body)
    status, body = await api.check_run(output={"title": "t", "summary": "s", "text": "€" * 21_846})
    assert status == 422
    assert "text exceeds a maximum bytesize" in str(body)
    status, run = await api.check_run(output={"title": "t", "summary": "é" * 32_767})  # 65,534 bytes
    assert status == 201
    assert run["output"]["summary"] == "é" * 32_767


async def test_annotations_are_at_most_fifty_a_request_and_appended_on_every_patch(api: Api) -> None:
    status, _ = await api.check_run(output={"title": "t", "summary": "s", "annotations": [NOTE] * 51})
    assert status == 422
    status, run = await api.check_run(output={"title": "t", "summary": "s", "annotations": [NOTE] * 2})
    assert status == 201
    for _ in range(2):
        status, patched = await api.call("PATCH", f"/repos/{REPO}/check-runs/{run['id']}",
                                         {"output": {"title": "t", "summary": "again", "annotations": [NOTE] * 2}})
        assert status == 200
    assert patched["output"]["annotations_count"] == 6  # GitHub appends: re-sending duplicates


@pytest.mark.parametrize("action", [
    {"label": "L" * 21, "description": "d", "identifier": "i"},
    {"label": "l", "description": "D" * 41, "identifier": "i"},
    {"label": "l", "description": "d", "identifier": "I" * 21},
])
async def test_check_run_actions_keep_githubs_length_limits(api: Api, action: dict[str, str]) -> None:
    status, _ = await api.check_run(actions=[action])
    assert status == 422


async def test_comment_bodies_are_limited_to_65536_characters(api: Api) -> None:
    status, issue = await api.call("POST", f"/repos/{REPO}/issues", {"title": "t"})
    assert status == 201
    status, body = await api.call("POST", f"/repos/{REPO}/issues/{issue['number']}/comments", {"body": "x" * 65_537})
    assert status == 422
    assert "65536" in str(body)
    status, _ = await api.call("POST", f"/repos/{REPO}/issues/{issue['number']}/comments", {"body": "é" * 65_536})
    assert status == 201


async def test_an_app_may_not_set_maintainer_can_modify(api: Api, tmp_path: Path) -> None:
    await push_branch(api.hub, tmp_path, "feature", {"f.txt": "x\n"}, full_name=REPO)
    pull = {"title": "Feature", "head": "feature", "base": "main"}
    status, body = await api.call("POST", f"/repos/{REPO}/pulls", {**pull, "maintainer_can_modify": True})
    assert status == 422
    assert body["errors"][0]["field"] == "maintainer_can_modify"
    status, _ = await api.call("POST", f"/repos/{REPO}/pulls", pull)
    assert status == 201


async def test_an_api_the_manifest_does_not_grant_is_refused_with_403(api: Api) -> None:
    status, body = await api.call("POST", f"/repos/{REPO}/statuses/{api.sha}", {"state": "success"})
    assert status == 403
    assert body["message"] == "Resource not accessible by integration"  # statuses: read only
    status, combined = await api.call("GET", f"/repos/{REPO}/commits/{api.sha}/status")
    assert status == 200
    assert combined["sha"] == api.sha
    api.hub.app.permissions.pop("checks")
    status, _ = await api.call("GET", f"/repos/{REPO}/commits/{api.sha}/check-runs")
    assert status == 403


async def test_events_go_only_to_an_app_subscribed_and_permitted(api: Api, webhook_sink: WebhookSink,
                                                                 tmp_path: Path) -> None:
    await push_branch(api.hub, tmp_path, "one", {"a.txt": "a\n"}, full_name=REPO)
    api.hub.statuses.create(REPO, api.sha, {"state": "success", "context": "ci/other"}, actor="other-ci")
    await webhook_sink.wait_for("status")
    assert webhook_sink.of("push") == []  # the manifest does not subscribe to push

    api.hub.apps.subscribe("push")
    sha = await push_branch(api.hub, tmp_path, "two", {"b.txt": "b\n"}, full_name=REPO)
    await webhook_sink.wait_for("push", where=lambda d: d.payload["after"] == sha)

    api.hub.app.permissions.pop("statuses")
    api.hub.statuses.create(REPO, api.sha, {"state": "failure", "context": "ci/other"}, actor="other-ci")
    api.hub.issues.create(REPO, "after the status")
    await webhook_sink.wait_for("issues", "opened")
    assert [d.payload["state"] for d in webhook_sink.of("status")] == ["success"]


async def test_a_manifest_subscribing_to_events_it_may_not_receive_is_refused(api: Api) -> None:
    manifest = {"name": "Agent-Z", "url": "https://example.invalid", "default_events": ["status", "check_run"],
                "default_permissions": {"checks": "write", "contents": "write"},
                "hook_attributes": {"url": "http://127.0.0.1:9/hook"}}
    async with api.session.post(f"{api.hub.api_url}/_fakehub/app-manifests", json={"manifest": manifest}) as r:
        code = (await r.json())["code"]
    async with api.session.post(f"{api.hub.api_url}/app-manifests/{code}/conversions") as response:
        body = await response.json()
    assert response.status == 422
    assert body["errors"] == ["Default events are not supported by permissions: status"]
