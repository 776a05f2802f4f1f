"""CI verdicts against fakehub's GitHub Actions: real webhooks, the real receiver and client.

Fakehub runs workflows on every push (a check suite per workflow, jobs as check runs,
a status CI, late suites, re-runs) and signs webhooks to Agent-Z's receiver; the test
works the inbox and the idle worker's settling like ``agentz serve`` does, and reads the
run. Jobs that must finish in a given order wait for a gate file the test creates.
"""

from __future__ import annotations

import shlex
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from agentz_app.bootstrap import open_services
from agentz_app.config import Settings
from agentz_app.fakehub import FakeHub
from agentz_app.fakehub.ci import Job, Workflow
from agentz_app.ingress.inbox import process_pending
from agentz_app.store.ci import repo_has_ci
from agentz_app.store.db import Database
from agentz_app.store.migrate import migrate
from agentz_app.store.models import Run
from agentz_app.store.runs import RunQueue
from agentz_app.web import WEBHOOK_PATH, create_app
from tests.contract.validator import ContractRecorder, GitHubContract
from tests.fakehub_fixtures import APP_ID, APP_MANIFEST, APP_SLUG, app_private_key, push_branch  # noqa: F401
from tests.waiting import wait_for
from workers.pipeline import PipelineDeps, settle_waiting
from workers.roles.prompts import feedback_prompt
from workers.wakeups import act_on_wakeups

pytestmark = pytest.mark.slow

REPO = "acme/widgets"
SECRET = "ci-verdicts-secret"
FILES = {"README.md": "# widgets\n"}
QUIET = 2.0
TOKEN = "ghs_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"


@dataclass
class CI:
    hub: FakeHub
    settings: Settings
    db: Database
    queue: RunQueue
    deps: PipelineDeps
    github: Any
    tmp: Path

    def gate(self, name: str) -> str:
        """A shell command that waits until the test opens gate ``name``."""
        path = shlex.quote(str(self.tmp / f"gate-{name}"))
        return f"while [ ! -f {path} ]; do sleep 0.05; done"

    def open(self, name: str) -> None:
        (self.tmp / f"gate-{name}").write_text("open\n")

    async def push(self, branch: str, content: str) -> str:
        return await push_branch(self.hub, self.tmp, branch, {"app.txt": content}, full_name=REPO)

    def waiting_run(self, run_id: str, sha: str, branch: str) -> Run:
        number = int(self.hub.issues.create(REPO, f"Issue for {run_id}", "x", labels=["agent-z"])["number"])
        installation = int(self.hub.state.repo(REPO)["installation_id"])
        with self.db.begin() as session:
            session.add(Run(id=run_id, repo=REPO, issue_number=number, title="x", status="waiting_checks", attempt=1,
                            head_sha=sha, branch=branch, base_branch="main", installation_id=installation,
                            plan={"summary": "s", "steps": ["a"], "risk": "low"}))
        return self.queue.reads.get(run_id)

    async def until(self, run_id: str, done: Callable[[Run], bool]) -> Run:
        """Work the inbox, act on wake-ups and settle waiting runs (as the receiver and workers do) until ``done``."""
        async def settled() -> Run | None:
            await process_pending(self.db, self.settings, github=self.github)
            await act_on_wakeups(self.deps, "worker-1")
            await settle_waiting(self.deps)
            run = self.queue.reads.get(run_id)
            return run if done(run) else None

        try:
            return await wait_for(settled, timeout=90.0, what=f"run {run_id} to settle", interval=0.05)
        except AssertionError as exc:
            events = [e.kind for e in self.queue.reads.events(run_id)]
            raise AssertionError(f"{exc}; run still {self.queue.reads.get(run_id).status}: {events}") from None

    def check_runs(self, name: str) -> list[dict[str, Any]]:
        return sorted((r for r in self.hub.state.data["check_runs"].values() if r["name"] == name),
                      key=lambda r: r["id"])

    def statuses_seen(self, run_id: str) -> list[str]:
        return [str(e.to_status) for e in self.queue.reads.events(run_id) if e.to_status]


@pytest.fixture
async def ci(tmp_path: Path, app_private_key: str) -> AsyncIterator[CI]:  # noqa: F811
    hub = FakeHub(tmp_path / "hub", webhook_secret=SECRET, app_id=APP_ID, app_slug=APP_SLUG,
                  private_key_pem=app_private_key, webhook_backoff_seconds=0.02, ci_concurrency=2,
                  app_manifest=yaml.safe_load(APP_MANIFEST.read_text("utf-8")))
    recorder = ContractRecorder(GitHubContract.load())
    hub.observers.append(recorder)
    await hub.start()
    settings = Settings.load(
        None, database_url=f"sqlite:///{tmp_path / 'agentz.db'}", state_dir=tmp_path / "state",
        github_app_id=APP_ID, github_private_key=app_private_key, github_app_slug=APP_SLUG,
        github_webhook_secret=SECRET, github_api_url=hub.api_url, git_url_template=hub.git_url_template,
        ci_quiet_seconds=QUIET, max_review_rounds=3,
    )
    db = Database.from_url(settings.database_url)
    migrate(db)
    receiver = web.AppRunner(create_app(settings, db, process_inbox=False), access_log=None)
    await receiver.setup()
    site = web.TCPSite(receiver, "127.0.0.1", 0)
    await site.start()
    hub.set_webhook(url=f"http://127.0.0.1:{receiver.addresses[0][1]}{WEBHOOK_PATH}")
    await hub.repos.create(REPO, FILES, ci_command=None)
    try:
        async with open_services(settings, db) as services:
            deps = services.pipeline()
            yield CI(hub, settings, db, deps.queue, deps, services.github, tmp_path)
    finally:
        await hub.stop()
        await receiver.cleanup()
        db.dispose()
    assert not recorder.violations, "traffic departs from GitHub's description:\n" + recorder.report()


async def test_a_later_success_of_a_same_named_job_does_not_hide_a_failure_and_the_fixer_gets_its_log(
    ci: CI,
) -> None:
    noisy_failure = ("i=0; while [ $i -lt 3000 ]; do echo \"noise line $i\"; i=$((i+1)); done; "
                     "printf '\\033[31mFAILED\\033[0m test_speed\\n'; "
                     f"echo 'E   assert speed() >= 1'; echo 'using token {TOKEN}'; exit 1")
    ci.hub.repos.set_workflows(REPO, [Workflow("Tests", (Job("test", noisy_failure),)),
                                Workflow("Lint", (Job("test", ci.gate("lint") + "; echo lint ok"),))])
    sha = await ci.push("feature", "1")
    ci.waiting_run("r1", sha, "feature")

    await ci.until("r1", lambda _: any(r["conclusion"] == "failure" for r in ci.check_runs("test")))
    assert ci.queue.reads.get("r1").status == "waiting_checks"  # the other "test" is still running
    ci.open("lint")
    run = await ci.until("r1", lambda r: r.status != "waiting_checks")

    assert run.status == "fixing_ci", ci.statuses_seen("r1")
    assert [c["conclusion"] for c in ci.check_runs("test")] == ["failure", "success"]
    assert run.feedback is not None
    [failed] = run.feedback["checks"]
    assert (failed["name"], failed["conclusion"], failed["app"]) == ("test", "failure", "github-actions")
    log = failed["log"]
    assert "E   assert speed() >= 1" in log
    assert "##[error]Process completed with exit code 1." in log
    assert "FAILED test_speed" in log
    assert "\x1b" not in log
    assert TOKEN not in log
    assert "[redacted]" in log
    assert "noise line 2999" in log
    assert "noise line 10\n" not in log
    assert len(log) <= 8_100
    assert "Syncing repository" not in log  # only the failing step
    prompt = feedback_prompt(run.feedback)
    assert "E   assert speed() >= 1" in prompt
    assert TOKEN not in prompt
    assert "untrusted" in prompt.lower()
    downloads = ci.hub.actions.blob_requests
    assert downloads
    assert not any("Authorization" in headers for headers in downloads)


async def test_a_suite_created_after_the_first_suite_completed_is_waited_for(ci: CI) -> None:
    ci.hub.repos.set_workflows(REPO, [
        Workflow("CI", (Job("build", "echo built"),)),
        Workflow("Coverage", (Job("coverage", "echo 'coverage dropped to 41%'; exit 1"),), app="codecov",
                 after="CI", delay=0.5),
    ])
    sha = await ci.push("feature", "1")
    ci.waiting_run("r2", sha, "feature")
    run = await ci.until("r2", lambda r: r.status != "waiting_checks")

    assert run.status == "fixing_ci"
    assert "done" not in ci.statuses_seen("r2")
    assert run.feedback is not None
    [failed] = run.feedback["checks"]
    assert (failed["name"], failed["app"]) == ("coverage", "codecov")
    assert "coverage dropped to 41%" in failed["summary"]  # another App: its check run's output
    suites = [s for s in ci.hub.state.data["check_suites"].values() if s["head_sha"] == sha]
    assert sorted(s["app_slug"] for s in suites) == ["codecov", "github-actions"]


async def test_statuses_only_ci_decides_the_run(ci: CI) -> None:
    ci.hub.repos.set_workflows(REPO, [Workflow("jenkins", (Job("build", "echo ok"), Job("test", ci.gate("test"))),
                                         reports="status")])
    sha = await ci.push("feature", "1")
    ci.waiting_run("r3", sha, "feature")
    await ci.until("r3", lambda _: any(s["context"] == "jenkins/build" and s["state"] == "success"
                                       for s in ci.hub.state.data["statuses"]))
    assert ci.queue.reads.get("r3").status == "waiting_checks"  # jenkins/test is pending
    ci.open("test")
    run = await ci.until("r3", lambda r: r.status != "waiting_checks")

    assert run.status == "done"
    assert not [s for s in ci.hub.state.data["check_suites"].values() if s["head_sha"] == sha]
    with ci.db.read() as session:
        assert repo_has_ci(session, REPO)


async def test_a_re_run_of_a_failed_job_replaces_its_failure(ci: CI) -> None:
    marker = ci.tmp / "flake-fixed"
    ci.hub.repos.set_workflows(REPO, [Workflow("CI", (Job("flaky", f"test -f {shlex.quote(str(marker))}"),
                                                Job("slow", ci.gate("slow"))))])
    sha = await ci.push("feature", "1")
    ci.waiting_run("r4", sha, "feature")
    await ci.until("r4", lambda _: any(r["conclusion"] == "failure" for r in ci.check_runs("flaky")))

    marker.write_text("ok\n")
    [new_id] = ci.hub.actions.rerun_failed_jobs(REPO, ci.hub.actions.suite_of(REPO, sha, "CI"), user="octocat")
    ci.open("slow")
    run = await ci.until("r4", lambda r: r.status != "waiting_checks")

    assert run.status == "done", ci.statuses_seen("r4")
    assert "fixing_ci" not in ci.statuses_seen("r4")
    first, second = ci.check_runs("flaky")
    assert (first["conclusion"], second["id"], second["conclusion"]) == ("failure", new_id, "success")


async def test_the_grace_period_stops_applying_once_the_repository_has_had_ci(ci: CI) -> None:
    ci.hub.repos.set_workflows(REPO, [Workflow("CI", (Job("build", "echo ok"),))])
    first = await ci.push("first", "1")
    ci.waiting_run("r5", first, "first")
    assert (await ci.until("r5", lambda r: r.status != "waiting_checks")).status == "done"

    ci.hub.repos.set_workflows(REPO, [])  # the next head gets no CI at all
    second = await ci.push("second", "2")
    ci.waiting_run("r6", second, "second")
    with ci.db.begin() as session:
        stale = session.get(Run, "r6")
        assert stale is not None
        stale.updated_at -= ci.settings.ci_grace_seconds + 60
    await process_pending(ci.db, ci.settings, github=ci.github)
    assert await settle_waiting(ci.deps) == []
    assert ci.queue.reads.get("r6").status == "waiting_checks"
