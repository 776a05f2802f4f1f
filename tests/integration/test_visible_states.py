"""Every run state reaches GitHub: the reporter projects the database onto labels, the status comment,
check runs, reactions and review requests, whichever process changed the run."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from gidgethub import sansio

from agentz_app.cli import cli
from agentz_app.commands import CommandTarget, execute
from agentz_app.domain import states
from agentz_app.domain.commands import Command
from agentz_app.domain.states import Status
from agentz_app.ingress.routers import build_router
from agentz_app.reconciler import reconcile_once
from agentz_app.store.models import PullSnapshot, Run
from agentz_app.tui.data import cancel_from_dashboard
from tests.integration.test_coordinator import REPO, MemoryGH
from tests.integration.test_pipeline import APPROVE, PLAN, Harness
from workers.coordinator import LABEL_NEEDS_HUMAN, LABEL_RUNNING
from workers.pipeline import settle_ci
from workers.reporter import Reporter, wanted_labels

DELIVER: list[dict[str, Any]] = [
    {"role": "task_lead", "json": PLAN},
    {"role": "developer", "write": [{"path": "src/app.py", "content": "print('fast')\n"}]},
    {"role": "reviewer", "json": APPROVE},
]


class ReactingGH(MemoryGH):
    """MemoryGH plus reactions and review requests, with GitHub's rules for the latter."""

    def __init__(self) -> None:
        super().__init__()
        self.reactions: list[tuple[str, str]] = []  # (subject, content)
        self.reviewers: dict[int, list[str]] = {}

    def _route(self, method: str, url: str, data: Any) -> Any:
        rest = url[len(f"/repos/{self.repo}"):]
        if method == "POST" and (m := re.fullmatch(r"/issues/(comments/\d+|\d+)/reactions", rest)):
            self.calls.append((method, url, data))
            self.reactions.append((m[1], data["content"]))
            return {"id": self._id(), "content": data["content"]}
        if method == "POST" and (m := re.fullmatch(r"/pulls/(\d+)/requested_reviewers", rest)):
            self.calls.append((method, url, data))
            self.reviewers.setdefault(int(m[1]), []).extend(data["reviewers"])
            return self.pulls[int(m[1])]
        if method == "GET" and (m := re.fullmatch(r"/pulls/(\d+)", rest)):
            self.calls.append((method, url, data))
            return {"user": {"login": "agent-z[bot]"}, "requested_reviewers": [], **self.pulls[int(m[1])]}
        return super()._route(method, url, data)


def harness(tmp_path: Path, **overrides: Any) -> Harness:
    h = Harness(tmp_path, DELIVER, **{"github_report_coalesce_seconds": 0, **overrides})
    gh = ReactingGH()
    gh.add_issue(7, "Make it faster", "The app is slow.", labels=["agent-z"])
    gh.roles["alice"] = "write"
    h.gh = gh
    return h


def reactor(h: Harness) -> ReactingGH:
    assert isinstance(h.gh, ReactingGH)
    return h.gh


async def waiting(h: Harness, *, requested_by: str = "alice", comment_id: int | None = 900) -> Run:
    """A run with an open PR and our check runs, waiting for CI."""
    h.queue.intake.enqueue(REPO, 7, installation_id=1, title="Make it faster", requested_by=requested_by,
                           trigger_ref=f"comment:{comment_id}" if comment_id else None)
    await h.plan()
    submitted = await h.work()
    assert submitted.status == Status.WAITING_CHECKS
    return submitted


def status_body(h: Harness) -> str:
    [comment] = h.gh.comments.values()
    return str(comment["body"])


def reporter(h: Harness, *, clock: Any = time.time) -> Reporter:
    return Reporter(h.settings, h.db, h.queue.reads, h.queue.reports, h.deps.github, clock=clock)


# Pure decisions ------------------------------------------------------------------


def test_labels_show_work_and_every_ending_clears_the_running_and_skip_labels() -> None:
    assert wanted_labels("developing", ["ongoing"]).add == ("ongoing", LABEL_RUNNING)
    for status in states.TERMINAL:
        change = wanted_labels(status, ["ongoing"])
        assert {"ongoing", LABEL_RUNNING} <= set(change.remove)
        assert (LABEL_NEEDS_HUMAN in change.add) == (status == Status.NEEDS_HUMAN)
    assert wanted_labels("queued", ["ongoing"]).remove == (LABEL_NEEDS_HUMAN,)


# A trigger is acknowledged within one reporter pass ------------------------------


async def test_a_command_gets_eyes_and_a_queued_status_comment_from_the_next_report(tmp_path: Path) -> None:
    h = harness(tmp_path)
    event = sansio.Event({
        "action": "created",
        "issue": {"number": 7, "title": "Make it faster", "state": "open", "updated_at": "2026-01-01T00:00:00Z",
                  "comments_url": f"/repos/{REPO}/issues/7/comments"},
        "comment": {"id": 555, "body": "/agent-z run", "user": {"login": "alice", "type": "User"},
                    "created_at": "2026-01-01T00:00:01Z", "performed_via_github_app": None},
        "repository": {"full_name": REPO}, "installation": {"id": 1}, "sender": {"login": "alice"},
    }, event="issue_comment", delivery_id="d1")
    await build_router().dispatch(event, h.gh, db=h.db, settings=h.settings, queue=h.queue)
    assert h.gh.writes() == []  # the handler only changes the database
    assert await reporter(h).report_stale() == 1
    assert reactor(h).reactions == [("comments/555", "eyes")]
    assert "Queued" in status_body(h)
    assert await reporter(h).report_stale() == 0  # shown: nothing more to do


async def test_a_trigger_label_puts_eyes_on_the_issue(tmp_path: Path) -> None:
    h = harness(tmp_path)
    h.queue.intake.enqueue(REPO, 7, requested_by="alice", trigger_ref="issue")
    await reporter(h).report_stale()
    assert reactor(h).reactions == [("7", "eyes")]


# Coalescing ------------------------------------------------------------------------


async def test_quick_transitions_cost_one_edit_after_the_quiet_window(tmp_path: Path) -> None:
    h = harness(tmp_path, github_report_coalesce_seconds=5)
    run, _ = h.queue.intake.enqueue(REPO, 7)
    await reporter(h).report_stale()  # never shown: created at once
    assert len(h.gh.writes("POST")) == 1
    for target in (Status.PLANNING, Status.QUEUED, Status.PLANNING, Status.READY):
        h.queue.moves.set_status(run.id, target, reason="moving", actor="test")
    assert await reporter(h).report_stale() == 0  # still changing: wait for quiet
    later = reporter(h, clock=lambda: time.time() + 6)
    assert await later.report_stale() == 1
    assert len(h.gh.writes("PATCH")) == 1
    assert "Planned" in status_body(h)


# Cancel through every path --------------------------------------------------------


async def _stop_button(h: Harness, run: Run) -> None:
    [check_id] = [i for i, c in h.gh.checks.items() if c["name"] == "Agent-Z / review"]
    event = sansio.Event({
        "action": "requested_action", "requested_action": {"identifier": "stop"},
        "check_run": {"id": check_id, "external_id": f"agent-z:{run.id}:review", "name": "Agent-Z / review",
                      "head_sha": run.head_sha, "status": "completed", "conclusion": "success"},
        "repository": {"full_name": REPO}, "installation": {"id": 1}, "sender": {"login": "alice"},
    }, event="check_run", delivery_id="d2")
    await build_router().dispatch(event, h.gh, db=h.db, settings=h.settings, queue=h.queue)


async def _command(h: Harness, run: Run) -> None:
    target = CommandTarget(repo=REPO, issue_number=7, title="", installation_id=1,
                           comments_url=f"/repos/{REPO}/issues/7/comments", comment_id=901)
    assert execute(h.queue, h.db, target, Command("cancel"), "alice").accepted


async def _cli(h: Harness, run: Run) -> None:
    result = CliRunner().invoke(cli, ["runs", "cancel", run.id],
                                env={"DATABASE_URL": h.settings.database_url}, catch_exceptions=False)
    assert result.exit_code == 0, result.output


async def _dashboard(h: Harness, run: Run) -> None:
    cancel_from_dashboard(h.db, run.id)


@pytest.mark.parametrize(("cancel", "reason"), [
    (_command, "cancelled by @alice with `/agent-z cancel`"),
    (_cli, "cancelled from the command line"),
    (_dashboard, "cancelled from the dashboard"),
    (_stop_button, "stopped from a check run by @alice"),
])
async def test_cancelling_by_any_path_leaves_github_consistent(tmp_path: Path, cancel: Any, reason: str) -> None:
    h = harness(tmp_path)
    run = await waiting(h)
    assert LABEL_RUNNING in h.gh.labels[7]
    await cancel(h, run)
    assert h.queue.reads.get(run.id).status == Status.CANCELLED
    await reporter(h).report_stale()
    assert h.gh.labels[7] == ["agent-z"]
    body = status_body(h)
    assert "Cancelled" in body
    assert reason in body
    ours = [c for c in h.gh.checks.values() if c["head_sha"] == run.head_sha]
    assert ours
    assert all(c["conclusion"] == "cancelled" for c in ours)
    writes = len(h.gh.writes())
    await reporter(h).report_stale()
    assert len(h.gh.writes()) == writes  # consistent: a second pass writes nothing


# Reconciler outcomes ----------------------------------------------------------------


@pytest.mark.parametrize(("infra_attempts", "status", "label"), [
    (0, Status.NEEDS_HUMAN, [LABEL_NEEDS_HUMAN]),
    (5, Status.FAILED, []),
])
async def test_reconciler_outcomes_appear_on_github(tmp_path: Path, infra_attempts: int, status: Status,
                                                    label: list[str]) -> None:
    h = harness(tmp_path, max_infra_attempts=3)
    run, _ = h.queue.intake.enqueue(REPO, 7)
    with h.db.begin() as session:
        session.get(Run, run.id).status = Status.READY  # type: ignore[union-attr]
        session.add(PullSnapshot(repo=REPO, number=99, state="closed", merged=False, head_ref="elsewhere"))
    claimed = h.queue.leases.claim("worker-x", statuses=[Status.READY], run_id=run.id)
    assert claimed is not None
    h.queue.moves.update(claimed[1], infra_attempts=infra_attempts, pr_number=99)
    h.queue.moves.transition(claimed[1], Status.SUBMITTING)  # its PR was closed: nothing to resume
    report = reconcile_once(h.db, h.settings, clock=lambda: time.time() + 3600)
    assert run.id in report.needs_human + report.failed
    await reporter(h).report_stale()
    assert h.queue.reads.get(run.id).status == status
    assert h.gh.labels[7] == ["agent-z", *label]
    body = status_body(h)
    assert ("Needs a human" if status == Status.NEEDS_HUMAN else "Failed") in body
    assert "lease of worker-x expired" in body


# Review request on green ------------------------------------------------------------


async def test_a_green_pull_request_asks_the_person_who_triggered_for_a_review(tmp_path: Path) -> None:
    h = harness(tmp_path)
    run = await waiting(h)
    assert run.head_sha is not None
    h.ci(run.head_sha, "success")
    assert (await settle_ci(h.deps, h.gh, h.queue.reads.get(run.id))).status == Status.DONE
    assert reactor(h).reviewers == {run.pr_number: ["alice"]}
    await reporter(h).report_stale()
    assert reactor(h).reviewers == {run.pr_number: ["alice"]}  # asked once
    assert len(h.gh.writes()) <= 12, h.gh.writes()


@pytest.mark.parametrize("requester", ["bob", "agent-z[bot]", "scheduler"])
async def test_no_review_request_for_someone_who_is_not_a_collaborator_or_not_a_person(
    tmp_path: Path, requester: str
) -> None:
    h = harness(tmp_path)
    run = await waiting(h, requested_by=requester, comment_id=None)
    assert run.head_sha is not None
    h.ci(run.head_sha, "success")
    assert (await settle_ci(h.deps, h.gh, h.queue.reads.get(run.id))).status == Status.DONE
    assert reactor(h).reviewers == {}
