"""The ``Agent-Z / config`` check run on fakehub: an invalid .github/agent-z.yml fails on the default branch."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import gidgethub.aiohttp
import pytest

from agentz_app.config import Settings
from agentz_app.fakehub import FakeHub
from agentz_app.repo_config import stored_config
from agentz_app.store.db import Database
from agentz_app.store.migrate import migrate
from tests.db_templates import copy_migrated_sqlite
from tests.fakehub_fixtures import app_private_key, clone, fakehub, installation_token, run_git, webhook_sink
from workers.repo_setup import load_repo_config
from workers.worktrees import Worktrees

__all__ = ["app_private_key", "fakehub", "webhook_sink"]  # fixtures used by name

REPO = "acme/widgets"
INVALID = "version: 1\nbackends:\n  reviewer: gpt-9\nsetup: install everything\n"


class TokenGH(gidgethub.aiohttp.GitHubAPI):
    """gidgethub's own client over real HTTP with an installation token; counts the POSTs it makes."""

    def __init__(self, session: aiohttp.ClientSession, hub: FakeHub, token: str) -> None:
        super().__init__(session, "agent-z-tests", oauth_token=token, base_url=hub.api_url)
        self.posts = 0

    async def post(self, url: str, url_vars: Mapping[str, Any] | None = None, *, data: Any, **kwargs: Any) -> Any:
        self.posts += 1
        return await super().post(url, url_vars, data=data, **kwargs)


@pytest.fixture
async def gh(fakehub: FakeHub, app_private_key: str) -> AsyncIterator[TokenGH]:
    await fakehub.repos.create(REPO, {"README.md": "# widgets\n", ".github/agent-z.yml": INVALID}, ci_command=None)
    async with aiohttp.ClientSession() as session:
        yield TokenGH(session, fakehub, await installation_token(session, fakehub, app_private_key, REPO))


@pytest.fixture
def parts(tmp_path: Path, fakehub: FakeHub) -> tuple[Worktrees, Database]:
    settings = Settings.load(None, database_url=copy_migrated_sqlite(tmp_path / "db.sqlite"),
                             state_dir=tmp_path / "state", git_url_template=fakehub.git_url_template,
                             default_backend="scripted")
    db = Database.from_url(settings.database_url)
    migrate(db)
    return Worktrees(settings), db


async def config_checks(gh: TokenGH, sha: str) -> list[dict[str, Any]]:
    found = await gh.getitem(f"/repos/{REPO}/commits/{sha}/check-runs?check_name=Agent-Z+/+config")
    return list(found["check_runs"])


async def test_an_invalid_file_fails_the_config_check_on_the_default_branch_head_once(
    gh: TokenGH, parts: tuple[Worktrees, Database]
) -> None:
    worktrees, db = parts
    await worktrees.ensure_mirror(REPO)
    stored = await load_repo_config(worktrees, db, REPO, "main", gh=gh)
    assert stored.config is None
    assert [p.line for p in stored.problems] == [3, 4]
    [check] = await config_checks(gh, stored.commit_sha)
    assert check["conclusion"] == "failure"
    assert check["output"]["title"] == ".github/agent-z.yml: 2 problems"
    assert ".github/agent-z.yml:3: backends.reviewer" in check["output"]["summary"]

    again = await load_repo_config(worktrees, db, REPO, "main", gh=gh)
    assert again.commit_sha == stored.commit_sha
    assert gh.posts == 1  # unchanged file: not parsed or reported again


async def test_fixing_the_file_passes_the_check_on_the_new_head_and_applies_it(
    gh: TokenGH, parts: tuple[Worktrees, Database], fakehub: FakeHub, tmp_path: Path
) -> None:
    worktrees, db = parts
    await worktrees.ensure_mirror(REPO)
    await load_repo_config(worktrees, db, REPO, "main", gh=gh)
    clone_dir = await clone(fakehub, REPO, tmp_path / "clone")
    (clone_dir / ".github" / "agent-z.yml").write_text("setup: [pip install -e .]\n")
    await run_git("commit", "-q", "-am", "Fix the configuration", cwd=clone_dir)
    await run_git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=clone_dir)
    head = await run_git("rev-parse", "HEAD", cwd=clone_dir)
    await worktrees.ensure_mirror(REPO)
    stored = await load_repo_config(worktrees, db, REPO, "main", gh=gh)
    assert stored.commit_sha == head
    assert stored.config is not None
    assert stored.config.setup == ["pip install -e ."]
    [check] = await config_checks(gh, head)
    assert check["conclusion"] == "success"
    assert stored_config(db, REPO) == stored
