"""Agents learn who wrote the issue and each comment, and with what standing.

Snapshots keep GitHub's ``author_association``; the pipeline's issue context carries
it into the prompt headers, and says "unknown" when GitHub did not send one.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from agentz_app.store import snapshots
from agentz_app.store.db import Database
from agentz_app.store.models import Repository, Run
from workers.pipeline import load_issue
from workers.roles.prompts import AuthoredText, plan_prompt

REPO = "acme/app"


class NoGitHub:
    async def getitem(self, url: str) -> Any:
        raise AssertionError(f"unexpected request {url}")


def _store(db: Database) -> None:
    with db.begin() as session:
        session.add(Repository(id=1, full_name=REPO, default_branch="trunk"))
        snapshots.upsert_issue(session, REPO, {
            "number": 7, "title": "Crash", "body": "It crashes", "user": {"login": "mallory"},
            "author_association": "NONE", "updated_at": "2026-01-01T00:00:00Z"})
        snapshots.upsert_comment(session, REPO, 7, {
            "id": 100, "body": "Confirmed.", "user": {"login": "olivia"}, "author_association": "OWNER",
            "updated_at": "2026-01-01T00:00:01Z"})
        snapshots.upsert_comment(session, REPO, 7, {
            "id": 101, "body": "me too", "user": {"login": "sam"}, "updated_at": "2026-01-01T00:00:02Z"})
        snapshots.upsert_comment(session, REPO, 7, {
            "id": 102, "body": "Status: queued", "user": {"login": "agent-z[bot]"},
            "author_association": "NONE", "updated_at": "2026-01-01T00:00:03Z"}, from_app=True)


async def test_the_issue_context_names_each_author_and_their_association(sqlite_db: Database) -> None:
    _store(sqlite_db)
    run = Run(id="r1", repo=REPO, issue_number=7, title="Crash")
    issue = await load_issue(SimpleNamespace(db=sqlite_db), NoGitHub(), run)  # type: ignore[arg-type]
    assert (issue.author, issue.author_association, issue.default_branch) == ("mallory", "NONE", "trunk")
    assert list(issue.comments) == [
        AuthoredText("Confirmed.", author="olivia", association="OWNER", kind="issue"),
        AuthoredText("me too", author="sam", association=None, kind="issue"),
    ]
    prompt = plan_prompt(issue)
    assert 'author="mallory" author_association="NONE (no association with the repository)"' in prompt
    assert 'author="olivia" author_association="OWNER (owner of the repository)"' in prompt
    assert 'author="sam" author_association="unknown"' in prompt
    assert "Status: queued" not in prompt
