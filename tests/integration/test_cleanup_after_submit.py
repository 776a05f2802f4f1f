"""A run whose CI already passed when it is submitted is finished and cleaned up by the worker."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentz_app.store.models import Run
from tests.integration.test_coordinator import REPO, MemoryGH
from tests.integration.test_pipeline import APPROVE, PLAN, Harness


@dataclass
class SlowGH(MemoryGH):
    """GitHub answering slower than a heartbeat, as a paced or distant API does."""

    delay: float = 0.0

    async def getitem(self, url: str, url_vars: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        await asyncio.sleep(self.delay)
        return await super().getitem(url, url_vars, **kwargs)

    async def put(self, url: str, url_vars: Mapping[str, Any] | None = None, *, data: Any = None, **kwargs: Any) -> Any:
        await asyncio.sleep(self.delay)
        return await super().put(url, url_vars, data=data, **kwargs)

    async def patch(self, url: str, url_vars: Mapping[str, Any] | None = None, *, data: Any = None,
                    **kwargs: Any) -> Any:
        await asyncio.sleep(self.delay)
        return await super().patch(url, url_vars, data=data, **kwargs)


async def test_cleanup_after_ci_that_passed_before_submit_outlives_the_released_lease(tmp_path: Path) -> None:
    h = Harness(tmp_path, [
        {"role": "task_lead", "json": PLAN},
        {"role": "developer", "write": [{"path": "src/app.py", "content": "print('fast')\n"}]},
        {"role": "reviewer", "json": APPROVE},
    ])
    slow = SlowGH()
    slow.add_issue(7, "Make it faster", "The app is slow.", labels=["agent-z", "agent-z:queued"])
    h.gh = slow

    def ci_done_before_waiting(run: Run, status: str) -> None:
        if status == "waiting_checks" and run.head_sha:
            h.ci(run.head_sha, "success")
            slow.delay = 0.5  # the cleanup now takes longer than a heartbeat interval (0.2 s)

    h.deps.progress = ci_done_before_waiting
    run_id = h.enqueue()
    await h.plan()
    run = await h.work()

    assert run.status == "done"
    assert slow.labels[7] == ["agent-z"]
    assert "Done" in next(iter(slow.comments.values()))["body"]
    # The issue is free; the change's files stay claimed until the PR is merged or closed.
    assert all(not claim.startswith("issue:") for claim in h.queue.reads.claims_of(run_id))
    assert f"file:{REPO}:src/app.py" in h.queue.reads.claims_of(run_id)
