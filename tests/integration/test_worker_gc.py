"""An idle worker collects worktrees left behind by runs that are gone or finished."""

from __future__ import annotations

import asyncio

from agentz_app.bootstrap import open_services
from agentz_app.config import Settings
from agentz_app.store.db import Database
from tests.waiting import wait_for
from workers.pool import run_worker


async def test_an_idle_worker_removes_orphaned_worktrees(settings: Settings, sqlite_db: Database) -> None:
    orphan = settings.state_dir / "worktrees" / "deadbeef0001"
    orphan.mkdir(parents=True)
    (orphan / "file.txt").write_text("left by a crashed run")
    stop = asyncio.Event()
    async with open_services(settings, sqlite_db) as services:
        worker = asyncio.create_task(run_worker(settings, deps=services.pipeline(), stop=stop))
        await wait_for(lambda: not orphan.exists(), timeout=10, what="the orphaned worktree removed")
        stop.set()
        await asyncio.wait_for(worker, 10)
    assert not orphan.exists()
