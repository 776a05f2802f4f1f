"""The permission rule's durable parts: commands handled once, throttled refusals,
failed look-ups, adoption and auto-mode scheduling, against a real database."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from gidgethub import sansio

from agentz_app.config import Settings
from agentz_app.domain.states import LIVE, Status
from agentz_app.errors import GitHubError
from agentz_app.ingress import snapshots, triggers
from agentz_app.reconciler import reconcile_once
from agentz_app.scheduling.service import schedule_once
from agentz_app.store import snapshots as snapshot_store
from agentz_app.store.db import Database
from agentz_app.store.models import Event, IssueSnapshot
from agentz_app.store.runs import RunQueue
from tests.fakes import FakeClock, FakeGH, FakeGitHubApp, FakeRunner

REPO = "acme/app"
_ids = itertools.count(7000)
LEGACY = {"admin": "admin", "maintain": "write", "write": "write", "triage": "read", "read": "read"}


def make_gh(**roles: str) -> FakeGH:
    gh = FakeGH()
    for login, role in roles.items():
        grant(gh, login, role)
    return gh


def grant(gh: FakeGH, login: str, role: str) -> None:
    gh.getitem_answers[f"/repos/{REPO}/collaborators/{login}/permission"] = {
        "permission": LEGACY[role], "role_name": role, "user": {"login": login}}


def issue(number: int = 7, *, pull: bool = False) -> dict[str, Any]:
    found: dict[str, Any] = {"number": number, "title": "Add a flag", "state": "open", "labels": [],
                             "comments_url": f"https://api.github.com/repos/{REPO}/issues/{number}/comments",
                             "user": {"login": "carol"}, "updated_at": "2026-01-01T00:00:00Z"}
    if pull:
        found["pull_request"] = {"url": f"https://api.github.com/repos/{REPO}/pulls/{number}"}
    return found


def comment_event(body: str, login: str, *, action: str = "created", comment_id: int | None = None,
                  previous: str | None = None, sender: str | None = None, number: int = 7,
                  pull: bool = False) -> sansio.Event:
    comment = {"id": comment_id or next(_ids), "body": body, "user": {"login": login, "type": "User"},
               "created_at": "2026-01-01T00:00:01Z", "updated_at": "2026-01-01T00:00:09Z"}
    data: dict[str, Any] = {"action": action, "issue": issue(number, pull=pull), "comment": comment,
                            "repository": {"full_name": REPO}, "installation": {"id": 5},
                            "sender": {"login": sender or login, "type": "User"}}
    if previous is not None:
        data["changes"] = {"body": {"from": previous}}
    return sansio.Event(data, event="issue_comment", delivery_id=f"d-{next(_ids)}")


def label_event(label: str, login: str, *, action: str = "labeled", number: int = 7) -> sansio.Event:
    data = {"action": action, "label": {"name": label}, "issue": issue(number), "repository": {"full_name": REPO},
            "installation": {"id": 5}, "sender": {"login": login, "type": "User"}}
    return sansio.Event(data, event="issues", delivery_id=f"d-{next(_ids)}")


async def dispatch(event: sansio.Event, gh: Any, db: Database, settings: Settings, **extra: Any) -> None:
    await triggers.router.dispatch(event, gh, db=db, settings=settings, queue=RunQueue(db), **extra)


def replies(gh: FakeGH, number: int = 7) -> list[str]:
    url = f"https://api.github.com/repos/{REPO}/issues/{number}/comments"
    return [call.data["body"] for call in gh.writes("POST") if call.url == url]


def command_reasons(db: Database) -> list[str]:
    with db.read() as session:
        return [row.payload["reason"] for row in session.query(Event).filter(Event.kind == "command")]


# Edited comments ------------------------------------------------------------------------


async def test_a_command_added_by_an_edit_runs_once(sqlite_db: Database, settings: Settings) -> None:
    gh = make_gh(alice="write")
    queue = RunQueue(sqlite_db)
    await dispatch(comment_event("Looks good", "alice", comment_id=1), gh, sqlite_db, settings)
    assert queue.reads.list_runs() == []
    edit = comment_event("Looks good\n/agent-z run", "alice", action="edited", comment_id=1, previous="Looks good")
    await dispatch(edit, gh, sqlite_db, settings)
    [run] = queue.reads.list_runs()
    queue.moves.cancel(run.id, reason="test", actor="test")
    await dispatch(edit, gh, sqlite_db, settings)  # a redelivery of the same edit
    # An edit that keeps the command, then one whose `changes` GitHub left out: nothing repeats.
    await dispatch(comment_event("Looks great\n/agent-z  RUN", "alice", action="edited", comment_id=1,
                                 previous="Looks good\n/agent-z run"), gh, sqlite_db, settings)
    await dispatch(comment_event("Looks great!\n/agent-z run", "alice", action="edited", comment_id=1),
                   gh, sqlite_db, settings)
    assert [r.id for r in queue.reads.list_runs()] == [run.id]
    assert gh.writes() == []
    assert "the edit kept the same command" in command_reasons(sqlite_db)


async def test_a_redelivered_or_re_edited_command_replies_once(sqlite_db: Database, settings: Settings) -> None:
    gh = make_gh(alice="write")
    created = comment_event("/agent-z status", "alice", comment_id=3)
    await dispatch(created, gh, sqlite_db, settings)
    await dispatch(created, gh, sqlite_db, settings)
    await dispatch(comment_event("Typo fixed.\n/agent-z status", "alice", action="edited", comment_id=3),
                   gh, sqlite_db, settings)
    assert len(replies(gh)) == 1
    assert command_reasons(sqlite_db)[-2:] == ["already handled", "already handled"]


async def test_an_edit_to_a_new_command_runs_the_new_one(sqlite_db: Database, settings: Settings) -> None:
    gh = make_gh(alice="write")
    queue = RunQueue(sqlite_db)
    await dispatch(comment_event("/agent-z run", "alice", comment_id=2), gh, sqlite_db, settings)
    await dispatch(comment_event("/agent-z cancel", "alice", action="edited", comment_id=2,
                                 previous="/agent-z run"), gh, sqlite_db, settings)
    [run] = queue.reads.list_runs()
    assert run.status == Status.CANCELLED


async def test_a_command_added_to_someone_elses_comment_does_not_run(sqlite_db: Database,
                                                                     settings: Settings) -> None:
    gh = make_gh(alice="admin", mallory="read")
    await dispatch(comment_event("/agent-z run", "mallory", action="edited", previous="hi", sender="alice"),
                   gh, sqlite_db, settings)
    assert RunQueue(sqlite_db).reads.list_runs() == []
    assert gh.calls == []
    assert command_reasons(sqlite_db) == ["comment edited by someone other than its author"]


# Refusals ------------------------------------------------------------------------------------


async def test_refusal_replies_are_throttled_per_user_per_issue_per_hour(sqlite_db: Database,
                                                                         settings: Settings) -> None:
    gh = make_gh(mallory="read", eve="triage")
    clock = FakeClock()
    for body in ("/agent-z run", "/agent-z plan", "/agent-z run please"):
        await dispatch(comment_event(body, "mallory"), gh, sqlite_db, settings, clock=clock)
    await dispatch(comment_event("/agent-z run", "eve"), gh, sqlite_db, settings, clock=clock)
    await dispatch(comment_event("/agent-z run", "mallory", number=8), gh, sqlite_db, settings, clock=clock)
    assert len(replies(gh, 7)) == 2
    assert len(replies(gh, 8)) == 1
    clock.now += 3599
    await dispatch(comment_event("/agent-z run", "mallory"), gh, sqlite_db, settings, clock=clock)
    assert len(replies(gh, 7)) == 2
    clock.now += 1
    await dispatch(comment_event("/agent-z run", "mallory"), gh, sqlite_db, settings, clock=clock)
    assert len(replies(gh, 7)) == 3
    assert RunQueue(sqlite_db).reads.list_runs() == []


async def test_commands_on_someone_elses_pull_request_get_no_reply_unless_the_commenter_may_steer(
    sqlite_db: Database, settings: Settings
) -> None:
    gh = make_gh(mallory="read", alice="write")
    gh.getitem_answers[f"/repos/{REPO}/pulls/41"] = {"number": 41, "head": {"ref": "mallory/feature"}}
    for _ in range(3):
        await dispatch(comment_event("/agent-z run", "mallory", number=41, pull=True), gh, sqlite_db, settings)
    assert gh.writes() == []
    assert not gh.requests_to(f"/repos/{REPO}/pulls/41")  # not even a look at the pull request
    await dispatch(comment_event("/agent-z run", "alice", number=41, pull=True), gh, sqlite_db, settings)
    assert len(replies(gh, 41)) == 1


# Failed look-ups --------------------------------------------------------------------------------


async def test_a_failed_permission_lookup_refuses_silently_and_a_redelivery_may_ask_again(
    sqlite_db: Database, settings: Settings
) -> None:
    gh = FakeGH(getitem_answers={f"/repos/{REPO}/collaborators/alice/permission": GitHubError(502, "bad gateway")})
    event = comment_event("/agent-z run", "alice")
    await dispatch(event, gh, sqlite_db, settings)
    await dispatch(label_event("agent-z", "alice"), gh, sqlite_db, settings)
    assert RunQueue(sqlite_db).reads.list_runs() == []
    assert gh.writes() == []
    assert "permission lookup failed" in command_reasons(sqlite_db)[0]
    grant(gh, "alice", "write")
    await dispatch(event, gh, sqlite_db, settings)
    assert len(RunQueue(sqlite_db).reads.list_runs(statuses=LIVE)) == 1


async def test_a_revoked_permission_counts_within_a_minute(sqlite_db: Database, settings: Settings) -> None:
    gh = make_gh(alice="write")
    clock = FakeClock()
    await dispatch(comment_event("/agent-z status", "alice"), gh, sqlite_db, settings, clock=clock)
    grant(gh, "alice", "read")
    clock.now += 30
    await dispatch(comment_event("/agent-z status", "alice"), gh, sqlite_db, settings, clock=clock)
    clock.now += 31
    await dispatch(comment_event("/agent-z run", "alice"), gh, sqlite_db, settings, clock=clock)
    assert RunQueue(sqlite_db).reads.list_runs() == []
    assert len(gh.requests_to(f"/repos/{REPO}/collaborators/alice/permission")) == 2


# Adoption -------------------------------------------------------------------------------------------


async def open_pull(gh: FakeGH, db: Database, settings: Settings, number: int, login: str) -> None:
    pull = {"number": number, "title": "Fix", "body": "Fixes #7", "state": "open", "user": {"login": login},
            "head": {"ref": f"{login}/fix", "sha": f"{number:040d}"}, "base": {"ref": "main"},
            "updated_at": "2026-01-01T00:00:05Z"}
    data = {"action": "opened", "number": number, "pull_request": pull, "repository": {"full_name": REPO},
            "installation": {"id": 5}, "sender": {"login": login}}
    await snapshots.router.dispatch(sansio.Event(data, event="pull_request", delivery_id=f"d-{next(_ids)}"),
                                    gh, db=db, settings=settings)


@pytest.mark.parametrize("policy", ["adopt", "cancel"])
async def test_an_outsiders_pull_request_is_neither_adopted_nor_cancels_the_run(
    sqlite_db: Database, settings: Settings, policy: str
) -> None:
    gh = make_gh(mallory="read")
    run, _ = RunQueue(sqlite_db).intake.enqueue(REPO, 7)
    await open_pull(gh, sqlite_db, settings, 30, "mallory")
    report = reconcile_once(sqlite_db, settings.model_copy(update={"foreign_pr_policy": policy}))
    assert report.total == 0
    after = RunQueue(sqlite_db).reads.get(run.id)
    assert (after.status, after.pr_number) == (Status.QUEUED, None)


async def test_a_maintainers_pull_request_is_adopted_even_after_an_outsiders(
    sqlite_db: Database, settings: Settings
) -> None:
    gh = make_gh(mallory="read", alice="maintain")
    run, _ = RunQueue(sqlite_db).intake.enqueue(REPO, 7)
    await open_pull(gh, sqlite_db, settings, 30, "mallory")
    await open_pull(gh, sqlite_db, settings, 31, "alice")
    assert reconcile_once(sqlite_db, settings).adopted == [run.id]
    assert RunQueue(sqlite_db).reads.get(run.id).pr_number == 31


async def test_a_pull_request_whose_authors_permission_is_unknown_is_not_adopted(
    sqlite_db: Database, settings: Settings
) -> None:
    run, _ = RunQueue(sqlite_db).intake.enqueue(REPO, 7)
    gh = FakeGH(getitem_answers={f"/repos/{REPO}/collaborators/alice/permission": GitHubError(500, "oops")})
    await open_pull(gh, sqlite_db, settings, 31, "alice")
    assert reconcile_once(sqlite_db, settings).adopted == []
    assert RunQueue(sqlite_db).reads.get(run.id).pr_number is None


# Auto mode ------------------------------------------------------------------------------------------


def seed_issue(db: Database, number: int, author: str, labels: list[str] | None = None) -> None:
    with db.begin() as session:
        snapshot_store.upsert_repository(session, {"id": 10, "full_name": REPO}, installation_id=5)
        session.add(IssueSnapshot(repo=REPO, number=number, title=f"Issue {number}", author=author,
                                  labels=labels or [], updated_at="2026-01-01T00:00:00Z"))


def relabel(db: Database, number: int, labels: list[str]) -> None:
    with db.begin() as session:
        row = session.query(IssueSnapshot).filter_by(repo=REPO, number=number).one()
        row.labels = labels


async def test_auto_mode_skips_an_outsiders_issue_until_a_maintainer_adds_an_eligible_label(
    sqlite_db: Database, settings: Settings
) -> None:
    cfg = settings.model_copy(update={"scheduler_eligible_labels": ["ready"]})
    gh = make_gh(mallory="read", tina="triage", alice="maintain")
    github = FakeGitHubApp(clients={5: gh})
    seed_issue(sqlite_db, 7, "mallory", ["ready"])
    [report] = await schedule_once(sqlite_db, cfg, FakeRunner(), github=github)
    assert report.verdict == "skipped:untrusted_author"
    assert "@mallory" in report.reason

    # A triage user can add labels, but does not vouch for the issue.
    await dispatch(label_event("ready", "tina"), gh, sqlite_db, cfg)
    [report] = await schedule_once(sqlite_db, cfg, FakeRunner(), github=github)
    assert report.verdict == "skipped:untrusted_author"

    await dispatch(label_event("ready", "alice"), gh, sqlite_db, cfg)
    [report] = await schedule_once(sqlite_db, cfg, FakeRunner(), github=github)
    assert report.verdict == "queued"


async def test_removing_the_vouching_label_makes_the_issue_untrusted_again(
    sqlite_db: Database, settings: Settings
) -> None:
    cfg = settings.model_copy(update={"scheduler_eligible_labels": ["ready"], "max_parallel_tasks": 1})
    gh = make_gh(mallory="read", alice="write")
    seed_issue(sqlite_db, 7, "mallory", ["ready"])
    await dispatch(label_event("ready", "alice"), gh, sqlite_db, cfg)
    await dispatch(label_event("ready", "alice", action="unlabeled"), gh, sqlite_db, cfg)
    [report] = await schedule_once(sqlite_db, cfg, FakeRunner(), github=FakeGitHubApp(clients={5: gh}))
    assert report.verdict == "skipped:untrusted_author"


async def test_auto_mode_asks_github_once_per_unknown_author(sqlite_db: Database, settings: Settings) -> None:
    gh = make_gh(mallory="read", alice="write")
    github = FakeGitHubApp(clients={5: gh})
    seed_issue(sqlite_db, 7, "mallory")
    seed_issue(sqlite_db, 8, "mallory")
    seed_issue(sqlite_db, 9, "alice")
    reports = await schedule_once(sqlite_db, settings, FakeRunner(), github=github)
    assert {r.number: r.verdict for r in reports} == {7: "skipped:untrusted_author", 8: "skipped:untrusted_author",
                                                      9: "queued"}
    await schedule_once(sqlite_db, settings, FakeRunner(), github=github)
    assert len(gh.requests_to(f"/repos/{REPO}/collaborators/mallory/permission")) == 1
    assert len(gh.requests_to(f"/repos/{REPO}/collaborators/alice/permission")) == 1


async def test_without_github_unknown_authors_do_not_pass_and_anyone_mode_lets_them(
    sqlite_db: Database, settings: Settings
) -> None:
    seed_issue(sqlite_db, 7, "mallory")
    [report] = await schedule_once(sqlite_db, settings, FakeRunner())
    assert report.verdict == "skipped:untrusted_author"
    anyone = settings.model_copy(update={"scheduler_trust": "anyone"})
    [report] = await schedule_once(sqlite_db, anyone, FakeRunner())
    assert report.verdict == "queued"
