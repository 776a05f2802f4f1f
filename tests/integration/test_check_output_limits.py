"""Long, multi-byte check-run output goes through fakehub, which refuses what GitHub refuses (bytes, not characters)."""

from __future__ import annotations

import aiohttp
from pydantic import SecretStr

from agentz_app.config import Settings
from agentz_app.fakehub import FakeHub, gitrepos
from agentz_app.github.app import GitHubApp
from agentz_app.github.client import ClientPolicy
from agentz_app.reporting.checks import MAX_SUMMARY
from agentz_app.store.db import Database
from agentz_app.store.models import Run
from tests.fakehub_fixtures import APP_ID, app_private_key, fakehub, webhook_sink
from workers.coordinator import CheckReport, Coordinator

__all__ = ["app_private_key", "fakehub", "webhook_sink"]  # fixtures used by name

REPO = "acme/widgets"


async def test_a_summary_of_70000_multibyte_characters_is_accepted_cut_to_githubs_byte_limit(
    fakehub: FakeHub, app_private_key: str, settings: Settings, sqlite_db: Database
) -> None:
    await fakehub.repos.create(REPO, {"README.md": "# widgets\n"}, ci_command=None)
    head = await gitrepos.rev_parse(gitrepos.repo_path(fakehub.root, REPO), "refs/heads/main")
    assert head is not None
    configured = settings.model_copy(update={"github_api_url": fakehub.api_url, "github_app_id": APP_ID,
                                             "github_private_key": SecretStr(app_private_key)})
    run = Run(id="run1", repo=REPO, issue_number=1, status="submitting")
    summary = "é€😀" * 23_334  # 70,002 characters, about 210 KB of UTF-8
    async with aiohttp.ClientSession() as session:
        app = GitHubApp(configured, session, policy=ClientPolicy(retry_attempts=1, min_write_interval=0.0))
        gh = await app.client_for_repo(REPO)
        coordinator = Coordinator(gh, sqlite_db, configured)
        check_id = await coordinator.report_check(
            run, CheckReport("review", "completed", "success", "Approved", summary, text=summary), head_sha=head)

    stored = fakehub.checks.get_run(REPO, check_id)["output"]
    for field in ("summary", "text"):
        body = stored[field].encode()
        assert len(body) <= MAX_SUMMARY
        assert stored[field].endswith("(truncated by Agent-Z)")
        assert stored[field].startswith("é€😀é€😀")
