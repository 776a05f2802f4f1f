"""The fake GitHub replaces an issue's labels in one request, as ``PUT .../labels`` does on GitHub."""

from __future__ import annotations

import aiohttp

from agentz_app.fakehub import FakeHub
from tests.fakehub_fixtures import app_private_key, fakehub, installation_token, webhook_sink

__all__ = ["app_private_key", "fakehub", "webhook_sink"]  # fixtures used by name

REPO = "acme/widgets"


async def test_set_labels_replaces_them_in_one_write_and_emits_label_events(
    fakehub: FakeHub, app_private_key: str
) -> None:
    await fakehub.repos.create(REPO, {"README.md": "# widgets\n"}, ci_command=None)
    fakehub.issues.create(REPO, "Bug", "details", labels=["bug", "ongoing"])
    async with aiohttp.ClientSession() as session:
        token = await installation_token(session, fakehub, app_private_key, REPO)
        fakehub.reset_counters()
        headers = {"Authorization": f"token {token}", "Accept": "application/vnd.github+json"}
        async with session.put(f"{fakehub.api_url}/repos/{REPO}/issues/1/labels", headers=headers,
                               json={"labels": ["bug", "agent-z:needs-human"]}) as response:
            assert response.status == 200
            labels = await response.json()
    assert [label["name"] for label in labels] == ["bug", "agent-z:needs-human"]
    assert [label["name"] for label in fakehub.issues.get(REPO, 1)["labels"]] == ["bug", "agent-z:needs-human"]
    assert fakehub.counters()["writes"] == 1
    actions = [(e["action"], e["payload"]["label"]["name"]) for e in fakehub.emitted("issues")
               if e["action"] in ("labeled", "unlabeled")]
    assert actions[-2:] == [("unlabeled", "ongoing"), ("labeled", "agent-z:needs-human")]
