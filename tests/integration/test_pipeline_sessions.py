"""Which agent session each call continues: the developer continues the Task Lead's, the Reviewer never does."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from agentz_app.domain.runner import LogSink, Runner, RunnerResult
from agentz_app.store.models import Run
from tests.integration.test_pipeline import HAPPY, Harness
from workers.pipeline import settle_ci
from workers.runners.registry import get_runner


@dataclass(frozen=True)
class Call:
    role: str
    runner: str  # the role the runner was asked for (its backend)
    given: str | None  # the session id the call was handed
    returned: str | None


class RecordingRunner:
    """A real (scripted) runner that records the session id each call is given and returns."""

    def __init__(self, inner: Runner, asked_for: str, calls: list[Call]) -> None:
        self.inner = inner
        self.name = inner.name
        self.asked_for = asked_for
        self.calls = calls

    async def run(self, role: str, prompt: str, workdir: Path, *, session_id: str | None = None, timeout: float,
                  env: Mapping[str, str] | None = None, log: LogSink | None = None,
                  read_only: Sequence[Path] = ()) -> RunnerResult:
        result = await self.inner.run(role, prompt, workdir, session_id=session_id, timeout=timeout, env=env,
                                      log=log, read_only=read_only)
        self.calls.append(Call(role, self.asked_for, session_id, result.session_id))
        return result


def recording(h: Harness) -> list[Call]:
    calls: list[Call] = []
    h.deps.runner_for = lambda role: RecordingRunner(get_runner(h.settings.backend_for(role), h.settings), role,
                                                     calls)
    return calls


async def deliver_with_a_review_fix_and_a_ci_fix(h: Harness) -> Run:
    run_id = h.enqueue()
    await h.plan()
    submitted = await h.work()
    assert submitted.head_sha is not None
    assert submitted.status == "waiting_checks"
    h.ci(submitted.head_sha, "failure")
    assert (await settle_ci(h.deps, h.gh, h.queue.reads.get(run_id))).status == "fixing_ci"
    fixed = await h.work()
    assert fixed.status == "waiting_checks"
    return fixed


async def test_development_and_every_fix_continue_the_task_leads_planning_session(tmp_path: Path) -> None:
    h = Harness(tmp_path, HAPPY)
    calls = recording(h)
    run = await deliver_with_a_review_fix_and_a_ci_fix(h)
    [planning] = [call for call in calls if call.role == "task_lead"]
    assert planning.given is None
    assert planning.returned
    developer = [call for call in calls if call.role == "developer"]
    assert len(developer) == 3  # develop, the review fix, the CI fix
    assert [call.given for call in developer] == [planning.returned] * 3
    assert {call.runner for call in developer} == {"developer"}
    assert run.session_id == planning.returned


async def test_the_reviewer_never_receives_the_task_leads_session(tmp_path: Path) -> None:
    h = Harness(tmp_path, HAPPY)
    calls = recording(h)
    run = await deliver_with_a_review_fix_and_a_ci_fix(h)
    lead_sessions = {call.returned for call in calls if call.role in ("task_lead", "developer")}
    reviewer = [call for call in calls if call.role == "reviewer"]
    assert len(reviewer) == 2
    assert reviewer[0].given is None
    assert all(call.given not in lead_sessions for call in reviewer)
    assert all(call.returned not in lead_sessions for call in reviewer)
    assert {call.runner for call in reviewer} == {"reviewer"}
    assert run.reviewer_session_id not in lead_sessions
