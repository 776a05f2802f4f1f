"""Attacks on dependency look-ups: an issue's text must not steer where or how often the App asks GitHub."""

from __future__ import annotations

from agentz_app.config import Settings
from agentz_app.scheduling.lookups import MAX_LOOKUPS_PER_PASS
from agentz_app.scheduling.service import schedule_once
from agentz_app.store.db import Database
from agentz_app.store.models import Repository
from tests.fakes import FakeGH, FakeGitHubApp, FakeRunner
from tests.integration.test_scheduler import REPO, add_issue

INSTALLATION = 5


def installed(db: Database) -> tuple[FakeGitHubApp, FakeGH]:
    with db.begin() as session:
        session.add(Repository(id=100, installation_id=INSTALLATION, full_name=REPO))
    gh = FakeGH()
    return FakeGitHubApp(clients={INSTALLATION: gh}), gh


async def test_an_outsiders_issue_causes_no_look_up(sqlite_db: Database, settings: Settings) -> None:
    github, gh = installed(sqlite_db)
    add_issue(sqlite_db, 1, author="mallory", body="Depends on victim/private#1, victim/private#2")
    gh.getitem_answers[f"/repos/{REPO}/collaborators/mallory/permission"] = {"permission": "read"}
    [report] = await schedule_once(sqlite_db, settings, FakeRunner(), github=github)
    assert report.verdict == "skipped:untrusted_author"
    assert [call.url for call in gh.calls if "/issues/" in call.url] == []


async def test_path_tricks_in_a_reference_never_leave_the_issue_url(sqlite_db: Database, settings: Settings) -> None:
    github, gh = installed(sqlite_db)
    add_issue(sqlite_db, 1, body="Depends on ../..#1, ../app_installations#2 and "
                                 "https://github.com/../../issues/3 and acme/..#4 and -x/y#5 and other/lib#6")
    [report] = await schedule_once(sqlite_db, settings, FakeRunner(), github=github)
    assert report.verdict == "skipped:dependency"
    assert "not a GitHub repository name" in report.reason
    assert [call.url for call in gh.calls] == ["/repos/other/lib/issues/6"]


async def test_hundreds_of_references_cost_a_bounded_number_of_requests(sqlite_db: Database,
                                                                        settings: Settings) -> None:
    github, gh = installed(sqlite_db)
    refs = ", ".join(f"other/lib#{n}" for n in range(1, 501))
    add_issue(sqlite_db, 1, body=f"Depends on {refs}")
    await schedule_once(sqlite_db, settings, FakeRunner(), github=github)
    assert len(gh.calls) == MAX_LOOKUPS_PER_PASS
