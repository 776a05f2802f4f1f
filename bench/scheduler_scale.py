"""Scheduler scale: what the Scheduler Agent costs on a big backlog, cold and after one change.

``python -m bench scheduler-scale [--repos N --issues M]`` fills a SQLite store with open
issues (bodies of 200 to 1,500 characters, one in fifty declaring a dependency) and runs
:func:`agentz_app.scheduling.service.schedule_once` with a runner that records every
prompt and ranks each ``### #N:`` candidate, three times: a cold pass over every
repository (nothing assessed yet), a pass over every repository with no change, and,
after one issue's body changed, the pass the scheduler role makes for the one dirty
repository. Without
arguments it measures 20 repositories x 300 issues and 1 x 2,000 (``--quick``: 4 x 100
and 1 x 400). Printed per shape and pass::

    scheduler-scale: repos=20 issues=300 pass=cold agent_calls=<n> max_prompt_chars=<n>
        total_prompt_chars=<n> wall_s=<s> missed_targets=<n>

Targets (``--check``): every prompt within ``SCHEDULER_PROMPT_CHARS``; no call when
nothing changed; one call under 5,000 characters after one change.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import BenchOptions, Figures

if TYPE_CHECKING:
    from agentz_app.domain.runner import RunnerResult

ONE_CHANGE_MAX_CHARS = 5_000
_HEADING = re.compile(r"^### #(\d+):", re.MULTILINE)
_WORDS = ("parser", "cache", "retry", "timeout", "config", "index", "export", "login", "upload", "search",
          "render", "queue", "report", "locale", "widget", "schema", "token", "backup", "filter", "sort")


@dataclass
class RecordingRunner:
    """A Scheduler Agent stand-in: ranks every candidate of a prompt and keeps the prompt sizes."""

    name: str = "recording"
    prompt_chars: list[int] = field(default_factory=list)

    async def run(self, role: str, prompt: str, workdir: Path, *, session_id: str | None = None, timeout: float,
                  env: Mapping[str, str] | None = None, log: Callable[[str], None] | None = None,
                  read_only: Sequence[Path] = ()) -> RunnerResult:
        import json

        from agentz_app.domain.runner import RunnerResult

        self.prompt_chars.append(len(prompt))
        numbers = [int(n) for n in _HEADING.findall(prompt)]
        answer = {"ranking": [{"number": n, "score": (n * 37) % 101, "reason": "fits"} for n in numbers]}
        return RunnerResult(exit_code=0, session_id=None, text=json.dumps(answer), json=answer)


def issue_body(rng: random.Random, number: int) -> str:
    """A plausible issue description of 200 to 1,500 characters (pure given the generator)."""
    target = rng.randint(200, 1500)
    words: list[str] = []
    while sum(len(word) + 1 for word in words) < target:
        words.append(rng.choice(_WORDS))
    body = f"Steps to reproduce issue {number}: " + " ".join(words)
    if number % 50 == 0 and number > 1:
        body += f"\n\nDepends on #{number - 1}"
    return body[: target + 60]


def fill_store(url: str, repos: int, issues: int, *, seed: int = 18) -> list[str]:
    """Insert ``repos`` x ``issues`` open issues; returns the repository names."""
    from agentz_app.store.db import Database
    from agentz_app.store.models import IssueSnapshot

    rng = random.Random(seed)
    names = [f"bench/repo-{index:02d}" for index in range(repos)]
    db = Database.from_url(url)
    try:
        for name in names:
            with db.begin() as session:
                session.add_all([
                    IssueSnapshot(repo=name, number=number, title=f"Improve the {rng.choice(_WORDS)} ({number})",
                                  body=issue_body(rng, number), state="open", labels=["enhancement"],
                                  assignees=[], author="octocat", author_association="MEMBER",
                                  updated_at=f"2026-01-01T{number // 3600:02d}:{number // 60 % 60:02d}:"
                                             f"{number % 60:02d}Z")
                    for number in range(1, issues + 1)
                ])
    finally:
        db.dispose()
    return names


def change_one_issue(url: str, repo: str, number: int) -> None:
    """Edit one issue's body, as a webhook would."""
    from sqlalchemy import select

    from agentz_app.store.db import Database
    from agentz_app.store.models import IssueSnapshot

    db = Database.from_url(url)
    try:
        with db.begin() as session:
            row = session.scalars(select(IssueSnapshot).where(IssueSnapshot.repo == repo,
                                                              IssueSnapshot.number == number)).one()
            row.body = (row.body or "") + "\n\nUpdate: reproduced on the latest release."
            row.updated_at = "2026-06-01T00:00:00Z"
    finally:
        db.dispose()


async def timed_pass(db: Any, settings: Any, runner: RecordingRunner,
                     repos: Sequence[str] | None = None) -> tuple[list[int], float]:
    """One scheduling pass (over ``repos``, or all); the prompt sizes it sent and its wall time."""
    from agentz_app.scheduling.service import schedule_once

    before = len(runner.prompt_chars)
    began = time.perf_counter()
    await schedule_once(db, settings, runner, repos=repos)
    return runner.prompt_chars[before:], time.perf_counter() - began


def pass_figures(repos: int, issues: int, name: str, chars: Sequence[int], wall: float, missed: int) -> Figures:
    """One printed line."""
    return {"repos": repos, "issues": issues, "pass": name, "agent_calls": len(chars),
            "max_prompt_chars": max(chars, default=0), "total_prompt_chars": sum(chars), "wall_s": wall,
            "missed_targets": missed}


async def measure_shape(url: str, state_dir: Path, repos: int, issues: int) -> list[Figures]:
    """Cold pass, unchanged pass and one-change pass over a filled store."""
    from agentz_app.config import Settings
    from agentz_app.store.db import Database

    names = await asyncio.to_thread(fill_store, url, repos, issues)
    settings = Settings.load(None, database_url=url, state_dir=state_dir, default_backend="scripted",
                             scheduler_trust="anyone", max_parallel_tasks=2, log_level="warning")
    limit = settings.scheduler_prompt_chars
    db = Database.from_url(url)
    runner = RecordingRunner()
    try:
        cold, cold_wall = await timed_pass(db, settings, runner)
        idle, idle_wall = await timed_pass(db, settings, runner)
        changed = names[len(names) // 2]
        await asyncio.to_thread(change_one_issue, url, changed, issues // 2 + 1)
        one, one_wall = await timed_pass(db, settings, runner, [changed])
    finally:
        db.dispose()
    return [
        pass_figures(repos, issues, "cold", cold, cold_wall, int(max(cold, default=0) > limit)),
        pass_figures(repos, issues, "unchanged", idle, idle_wall, int(bool(idle))),
        pass_figures(repos, issues, "one_change", one, one_wall,
                     int(len(one) != 1 or max(one, default=0) >= ONE_CHANGE_MAX_CHARS)),
    ]


def _parse(extra: Sequence[str], quick: bool) -> list[tuple[int, int]]:
    parser = argparse.ArgumentParser(prog="python -m bench scheduler-scale", add_help=False)
    parser.add_argument("--repos", type=int, default=None)
    parser.add_argument("--issues", type=int, default=None)
    args, _ = parser.parse_known_args(list(extra))
    if args.repos is not None or args.issues is not None:
        shape = (args.repos or 1, args.issues or 300)
        if not (1 <= shape[0] <= 200 and 1 <= shape[1] <= 20_000):
            parser.error("--repos must be 1-200 and --issues 1-20000")
        return [shape]
    return [(4, 100), (1, 400)] if quick else [(20, 300), (1, 2_000)]


def scenario(options: BenchOptions) -> list[Figures]:
    """Scheduler Agent calls and prompt sizes per pass, for each backlog shape."""
    import sys
    import tempfile

    from agentz_app.logs import configure_logging
    from bench.common import sqlite_database

    configure_logging("json", "warning", stream=sys.stderr)

    results: list[Figures] = []
    for repos, issues in _parse(options.extra, options.quick):
        with (tempfile.TemporaryDirectory(prefix="agentz-bench-scale-", ignore_cleanup_errors=True) as folder,
              sqlite_database() as url):
            results += asyncio.run(measure_shape(url, Path(folder), repos, issues))
    return results
