"""Trigger label and slash commands dispatched through the triggers router into a real queue."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import pytest
from gidgethub import sansio
from sqlalchemy import select

from agentz_app.commands import CommandTarget, perform
from agentz_app.config import Settings
from agentz_app.domain.commands import CommandDecision, Enqueue
from agentz_app.domain.states import LIVE, Status
from agentz_app.ingress.triggers import router
from agentz_app.store.db import Database
from agentz_app.store.models import Event, PullSnapshot
from agentz_app.store.runs import RunQueue
from tests.fakes import FakeGH

REPO = "acme/app"
COMMENTS_URL = f"https://api.github.com/repos/{REPO}/issues/7/comments"
_ids = itertools.count(1000)


def permission_url(user: str) -> str:
    return f"/repos/{REPO}/collaborators/{user}/permission"


def make_gh(**roles: str) -> FakeGH:
    legacy = {"admin": "admin", "maintain": "write", "write": "write", "triage": "read", "read": "read"}
    return FakeGH(getitem_answers={
        permission_url(user): {"permission": legacy[role], "role_name": role, "user": {"login": user}}
        for user, role in roles.items()
    })


def comment_event(body: str, user: str = "alice", *, number: int = 7, pull: bool = False,
                  user_type: str = "User", via_app: int | None = None, state: str = "open",
                  at: str = "") -> sansio.Event:
    issue: dict[str, Any] = {"number": number, "title": "Add a flag", "state": state,
                             "comments_url": COMMENTS_URL, "user": {"login": "carol"}, "updated_at": at}
    if pull:
        issue["pull_request"] = {"url": f"https://api.github.com/repos/{REPO}/pulls/{number}"}
    comment: dict[str, Any] = {"id": next(_ids), "body": body, "user": {"login": user, "type": user_type},
                               "performed_via_github_app": {"id": via_app} if via_app else None, "created_at": at}
    data = {"action": "created", "issue": issue, "comment": comment, "repository": {"full_name": REPO},
            "installation": {"id": 5}, "sender": {"login": user, "type": user_type}}
    return sansio.Event(data, event="issue_comment", delivery_id=f"d-{next(_ids)}")


def label_event(label: str, sender: str = "alice", *, state: str = "open", at: str = "") -> sansio.Event:
    data = {"action": "labeled", "label": {"name": label},
            "issue": {"number": 7, "title": "Add a flag", "state": state, "comments_url": COMMENTS_URL,
                      "updated_at": at},
            "repository": {"full_name": REPO}, "installation": {"id": 5}, "sender": {"login": sender}}
    return sansio.Event(data, event="issues", delivery_id=f"d-{next(_ids)}")


@pytest.fixture
def queue(db: Database) -> RunQueue:
    return RunQueue(db)


async def dispatch(event: sansio.Event, gh: Any, db: Database, settings: Settings, queue: RunQueue) -> None:
    await router.dispatch(event, gh, db=db, settings=settings, queue=queue)


def command_events(db: Database) -> list[dict[str, Any]]:
    with db.read() as session:
        return [row.payload for row in session.scalars(select(Event).where(Event.kind == "command"))]


async def test_write_user_run_command_enqueues(db: Database, settings: Settings, queue: RunQueue) -> None:
    gh = make_gh(alice="write")
    await dispatch(comment_event("/agent-z run"), gh, db, settings, queue)
    run = queue.reads.live_run_for_issue(REPO, 7)
    assert run is not None
    assert run.status == Status.QUEUED
    assert run.mode == "full"
    assert (run.requested_by, run.installation_id) == ("alice", 5)
    assert gh.writes() == []
    [recorded] = command_events(db)
    assert recorded["accepted"] is True
    assert recorded["user"] == "alice"


async def test_read_only_user_gets_one_reply_and_nothing_runs(db: Database, settings: Settings,
                                                               queue: RunQueue) -> None:
    gh = make_gh(mallory="read")
    await dispatch(comment_event("/agent-z run", "mallory"), gh, db, settings, queue)
    assert queue.reads.live_run_for_issue(REPO, 7) is None
    [reply] = gh.writes()
    assert reply.method == "POST"
    assert reply.url == COMMENTS_URL
    assert "@mallory" in reply.data["body"]
    assert "write" in reply.data["body"]
    [recorded] = command_events(db)
    assert recorded["accepted"] is False


async def test_triage_role_cannot_command(db: Database, settings: Settings, queue: RunQueue) -> None:
    gh = make_gh(tina="triage")
    await dispatch(comment_event("/agent-z plan", "tina"), gh, db, settings, queue)
    assert queue.reads.live_run_for_issue(REPO, 7) is None
    assert len(gh.writes("POST")) == 1


@pytest.mark.parametrize(
    ("user", "user_type", "via_app"),
    [("agent-z[bot]", "Bot", None), ("alice", "User", 1), ("dependabot[bot]", "Bot", None)],
)
async def test_own_app_and_bot_comments_are_ignored(db: Database, settings: Settings, queue: RunQueue,
                                                    user: str, user_type: str, via_app: int | None) -> None:
    gh = make_gh(alice="admin")
    await dispatch(comment_event("/agent-z run", user, user_type=user_type, via_app=via_app), gh, db, settings, queue)
    assert queue.reads.live_run_for_issue(REPO, 7) is None
    assert gh.calls == []
    assert command_events(db) == []


async def test_permission_is_cached_briefly(db: Database, settings: Settings, queue: RunQueue) -> None:
    gh = make_gh(alice="maintain")
    await dispatch(comment_event("/agent-z status"), gh, db, settings, queue)
    await dispatch(comment_event("/agent-z run"), gh, db, settings, queue)
    assert len(gh.requests_to(permission_url("alice"))) == 1


async def test_plan_then_run_approves_the_plan(db: Database, settings: Settings, queue: RunQueue) -> None:
    gh = make_gh(alice="write")
    await dispatch(comment_event("/agent-z plan"), gh, db, settings, queue)
    run = queue.reads.live_run_for_issue(REPO, 7)
    assert run is not None
    assert run.mode == "plan_only"
    queue.moves.set_status(run.id, Status.PLANNING, reason="planner")
    queue.moves.set_status(run.id, Status.AWAITING_APPROVAL, reason="plan posted")
    await dispatch(comment_event("/agent-z run"), gh, db, settings, queue)
    assert queue.reads.get(run.id).status == Status.READY
    assert len(queue.reads.list_runs()) == 1


async def test_cancel_retry_and_status(db: Database, settings: Settings, queue: RunQueue) -> None:
    gh = make_gh(alice="admin")
    await dispatch(comment_event("/agent-z run"), gh, db, settings, queue)
    run = queue.reads.live_run_for_issue(REPO, 7)
    assert run is not None
    await dispatch(comment_event("/agent-z cancel"), gh, db, settings, queue)
    assert queue.reads.get(run.id).status == Status.CANCELLED
    await dispatch(comment_event("/agent-z status"), gh, db, settings, queue)
    assert "**cancelled**" in gh.writes("POST")[-1].data["body"]
    await dispatch(comment_event("/agent-z retry"), gh, db, settings, queue)
    assert queue.reads.get(run.id).status == Status.QUEUED
    await dispatch(comment_event("/agent-z retry"), gh, db, settings, queue)
    assert "still queued" in gh.writes("POST")[-1].data["body"]
    assert len(queue.reads.list_runs()) == 1
    assert [e["command"] for e in command_events(db)] == ["run", "cancel", "status", "retry", "retry"]


async def test_cancel_without_a_run_explains(db: Database, settings: Settings, queue: RunQueue) -> None:
    gh = make_gh(alice="admin")
    await dispatch(comment_event("/agent-z cancel"), gh, db, settings, queue)
    [reply] = gh.writes()
    assert "no active" in reply.data["body"]


async def test_run_on_a_closed_issue_is_refused(db: Database, settings: Settings, queue: RunQueue) -> None:
    gh = make_gh(alice="admin")
    await dispatch(comment_event("/agent-z run", state="closed"), gh, db, settings, queue)
    assert queue.reads.list_runs() == []
    assert "closed" in gh.writes()[0].data["body"]


async def test_comment_on_our_pull_request_maps_to_its_issue(db: Database, settings: Settings,
                                                              queue: RunQueue) -> None:
    with db.begin() as session:
        session.add(PullSnapshot(repo=REPO, number=40, state="open", head_ref="agent-z/issue-7-add-a-flag"))
    gh = make_gh(alice="write")
    await dispatch(comment_event("/agent-z run", number=40, pull=True), gh, db, settings, queue)
    assert queue.reads.live_run_for_issue(REPO, 7) is not None
    assert queue.reads.live_run_for_issue(REPO, 40) is None


async def test_comment_on_someone_elses_pull_request_is_refused(db: Database, settings: Settings,
                                                                 queue: RunQueue) -> None:
    gh = make_gh(alice="write")
    gh.getitem_answers[f"/repos/{REPO}/pulls/41"] = {"number": 41, "head": {"ref": "alice/feature"}}
    await dispatch(comment_event("/agent-z run", number=41, pull=True), gh, db, settings, queue)
    assert queue.reads.list_runs() == []
    assert "own pull requests" in gh.writes()[0].data["body"]


async def test_trigger_label_enqueues(db: Database, settings: Settings, queue: RunQueue) -> None:
    await dispatch(label_event("agent-z"), make_gh(alice="write"), db, settings, queue)
    run = queue.reads.live_run_for_issue(REPO, 7)
    assert run is not None
    assert run.requested_by == "alice"


@pytest.mark.parametrize(
    ("label", "sender", "state"),
    [("agent-z", "agent-z[bot]", "open"), ("bug", "alice", "open"), ("agent-z", "alice", "closed")],
)
async def test_label_events_that_do_not_trigger(db: Database, settings: Settings, queue: RunQueue,
                                                label: str, sender: str, state: str) -> None:
    await dispatch(label_event(label, sender, state=state), None, db, settings, queue)
    assert queue.reads.list_runs(statuses=LIVE) == []


def _finish(queue: RunQueue) -> str:
    """End the issue's live run; returns its id."""
    run = queue.reads.live_run_for_issue(REPO, 7)
    assert run is not None
    queue.moves.cancel(run.id, reason="finished", actor="test")
    return run.id


async def test_a_label_already_answered_by_a_run_starts_nothing_when_its_webhook_comes_late(
    db: Database, settings: Settings, queue: RunQueue
) -> None:
    # The resync saw the labelled issue (updated 10:00:05) and the scheduler ran it to the end...
    queue.intake.enqueue(REPO, 7, requested_by="scheduler", issue_updated_at="2026-11-25T10:00:05Z")
    first = _finish(queue)
    # ...before the labeled webhook itself (10:00:03) was delivered.
    gh = make_gh(alice="write")
    await dispatch(label_event("agent-z", at="2026-11-25T10:00:03Z"), gh, db, settings, queue)
    assert queue.reads.live_run_for_issue(REPO, 7) is None
    assert [e.payload["reason"] for e in queue.reads.events(first) if e.kind == "trigger_label"] == [
        "already answered by this run"]

    # Labelling it again afterwards is a new request.
    await dispatch(label_event("agent-z", at="2026-11-25T10:05:00Z"), gh, db, settings, queue)
    run = queue.reads.live_run_for_issue(REPO, 7)
    assert run is not None
    assert queue.reads.events(run.id)[0].payload["issue_updated_at"] == "2026-11-25T10:05:00Z"


async def test_a_run_command_processed_twice_starts_one_run_and_the_repeat_is_silent(
    db: Database, settings: Settings, queue: RunQueue
) -> None:
    gh = make_gh(alice="write")
    event = comment_event("/agent-z run", at="2026-11-25T10:00:00Z")
    await dispatch(event, gh, db, settings, queue)
    _finish(queue)

    await dispatch(event, gh, db, settings, queue)  # after a crash, or a late redelivery
    assert queue.reads.live_run_for_issue(REPO, 7) is None
    assert gh.writes() == []
    assert command_events(db)[-1]["reason"] == "already answered by this run"
    await dispatch(comment_event("/agent-z run", at="2026-11-25T11:00:00Z"), gh, db, settings, queue)
    assert queue.reads.live_run_for_issue(REPO, 7) is not None


async def test_run_in_the_same_second_as_plan_still_approves_the_plan(
    db: Database, settings: Settings, queue: RunQueue
) -> None:
    gh = make_gh(alice="write")
    await dispatch(comment_event("/agent-z plan", at="2026-11-25T10:00:00Z"), gh, db, settings, queue)
    run = queue.reads.live_run_for_issue(REPO, 7)
    assert run is not None
    queue.moves.set_status(run.id, Status.PLANNING, reason="planner")
    queue.moves.set_status(run.id, Status.AWAITING_APPROVAL, reason="plan posted")
    await dispatch(comment_event("/agent-z run", at="2026-11-25T10:00:00Z"), gh, db, settings, queue)
    assert queue.reads.get(run.id).status == Status.READY


class RecordingGH(FakeGH):
    """Checks, at each reply, that the command's database changes were already committed."""

    def __init__(self, db: Database, **roles: str) -> None:
        super().__init__(getitem_answers=make_gh(**roles).getitem_answers)
        self.db = db
        self.seen_at_reply: list[list[dict[str, Any]]] = []

    async def post(self, url: str, url_vars: Mapping[str, Any] | None = None, *, data: Any = None, **_: Any) -> Any:
        self.seen_at_reply.append(command_events(self.db))
        return await super().post(url, url_vars, data=data)


@pytest.mark.parametrize(("body", "user"), [("/agent-z status", "alice"), ("/agent-z run", "mallory"),
                                            ("/agent-z cancel", "alice")])
async def test_a_reply_is_posted_after_the_command_is_recorded(db: Database, settings: Settings, queue: RunQueue,
                                                               body: str, user: str) -> None:
    gh = RecordingGH(db, alice="write", mallory="read")
    await dispatch(comment_event(body, user), gh, db, settings, queue)
    [seen] = gh.seen_at_reply
    assert [(event["user"], event["replied"]) for event in seen] == [(user, True)]


async def test_a_run_enqueued_between_decision_and_effect_is_reported_not_duplicated(
    db: Database, queue: RunQueue
) -> None:
    target = CommandTarget(repo=REPO, issue_number=7, title="Add a flag", installation_id=5,
                           comments_url=COMMENTS_URL, comment_id=901)
    decided = CommandDecision(True, "queued a run", None, (Enqueue("full", "/agent-z run by @alice"),))
    first = perform(queue, target, "alice", decided)  # decided on facts without a live run …
    again = perform(queue, target, "bob", decided)  # … and so was this one, concurrently
    assert first.accepted
    assert first.run_id is not None
    assert (again.accepted, again.run_id) == (False, first.run_id)
    assert "already working" in again.message
    assert [run.id for run in queue.reads.list_runs() if run.status in LIVE] == [first.run_id]
