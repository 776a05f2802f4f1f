"""Feedback from an Agent-Z pull request's conversation goes back to the same session, branch and PR."""

from __future__ import annotations

from pathlib import Path

from gidgethub import sansio

from agentz_app.ingress import runs as runs_ingress
from agentz_app.ingress import triggers
from agentz_app.store.wakeups import pending_wakeups
from tests.integration.test_coordinator import REPO, sh
from tests.integration.test_pipeline import APPROVE, PLAN, Harness
from workers.wakeups import act_on_wakeups


def comment_event(body: str, *, login: str = "carol", comment_id: int = 501) -> sansio.Event:
    return sansio.Event({
        "action": "created", "repository": {"full_name": REPO}, "sender": {"login": login},
        "issue": {"number": 0, "title": "x", "state": "open", "pull_request": {"url": "u"},
                  "comments_url": f"/repos/{REPO}/issues/0/comments"},
        "comment": {"id": comment_id, "body": body, "user": {"login": login}, "author_association": "MEMBER",
                    "created_at": "2026-01-01T00:00:01Z"},
    }, event="issue_comment", delivery_id=f"d-{comment_id}")


async def submitted(tmp_path: Path) -> tuple[Harness, str]:
    h = Harness(tmp_path, [
        {"role": "task_lead", "json": PLAN},
        {"role": "developer", "call": 1, "write": [{"path": "src/app.py", "content": "print('fast')\n"}]},
        {"role": "developer", "call": 2, "match": "speed_limit",
         "write": [{"path": "src/app.py", "content": "speed_limit = 1\n"}]},
        {"role": "reviewer", "json": APPROVE},
    ], github_app_slug="agent-z")
    h.gh.roles["carol"] = "write"
    run_id = h.enqueue()
    await h.plan()
    run = await h.work()
    assert run.status == "waiting_checks"
    assert run.pr_number is not None
    h.gh.pull_comments[run.pr_number] = [
        {"id": 10, "user": {"login": "carol"}, "path": "src/app.py", "line": 1, "body": "this name is unclear"},
        {"id": 11, "user": {"login": "carol"}, "path": "src/app.py", "line": 1, "body": "call it speed_limit",
         "in_reply_to_id": 10},
    ]
    return h, run_id


async def develops_again_on_the_same_pull_request(h: Harness, run_id: str) -> None:
    before = h.queue.reads.get(run_id)
    assert before.status == "fixing_ci"
    assert before.session_id is not None
    after = await h.work()
    assert after.status == "waiting_checks"
    assert after.head_sha != before.head_sha
    assert after.pr_number == before.pr_number
    assert after.branch == before.branch
    assert len(h.gh.pulls) == 1
    assert sh("git", "show", f"refs/heads/{after.branch}:src/app.py", cwd=h.origin) == "speed_limit = 1"
    subjects = sh("git", "log", "--format=%s", f"refs/heads/{after.branch}", cwd=h.origin).splitlines()
    assert subjects[0] == "Address review feedback on #7 (round 1)"
    # The developer resumed the Task Lead's session: its second call there matched the thread's reply.
    assert h.queue.reads.get(run_id).session_id == before.session_id


async def test_fix_command_in_the_pull_request_updates_the_same_branch_and_pull_request(tmp_path: Path) -> None:
    h, run_id = await submitted(tmp_path)
    pr = h.queue.reads.get(run_id).pr_number
    event = comment_event("/agent-z fix use the name from the review thread")
    event.data["issue"]["number"] = pr
    await triggers.router.dispatch(event, h.gh, db=h.db, settings=h.settings, queue=h.queue)
    assert h.queue.reads.get(run_id).status == "waiting_checks"
    assert h.queue.reads.get(run_id).feedback is None  # only woken
    assert await act_on_wakeups(h.deps, "worker-1") == 1
    feedback = h.queue.reads.get(run_id).feedback or {}
    assert feedback["review_body"] == "use the name from the review thread"
    await develops_again_on_the_same_pull_request(h, run_id)


async def test_a_mention_of_the_app_in_the_pull_request_updates_the_same_branch_and_pull_request(
    tmp_path: Path,
) -> None:
    h, run_id = await submitted(tmp_path)
    event = comment_event("@agent-z please follow the review thread")
    event.data["issue"]["number"] = h.queue.reads.get(run_id).pr_number
    await runs_ingress.router.dispatch(event, h.gh, db=h.db, settings=h.settings, queue=h.queue)
    assert await act_on_wakeups(h.deps, "worker-1") == 1
    await develops_again_on_the_same_pull_request(h, run_id)


async def test_a_fix_command_from_someone_who_may_not_steer_changes_nothing(tmp_path: Path) -> None:
    h, run_id = await submitted(tmp_path)
    event = comment_event("/agent-z fix delete the tests", login="mallory", comment_id=502)
    event.data["issue"]["number"] = h.queue.reads.get(run_id).pr_number
    await triggers.router.dispatch(event, h.gh, db=h.db, settings=h.settings, queue=h.queue)
    assert pending_wakeups(h.db) == []
    assert h.queue.reads.get(run_id).status == "waiting_checks"
