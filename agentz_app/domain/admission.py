"""Admission: which ranked candidates the scheduler may enqueue now (pure).

A pass starts from the live runs: at most ``MAX_PARALLEL_TASKS`` live runs in all and
``MAX_PARALLEL_PER_REPO`` (lowered by a repository's ``.github/agent-z.yml``) per
repository, and at most ``SCHEDULER_BATCH_SIZE`` new runs per repository and pass.
Candidates are admitted best score first; ``--force`` also admits the issues the
Scheduler Agent rejected as high-risk, after the ranked ones, as forced runs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from agentz_app.domain.scheduling import Assessment

BATCH_FULL = "batch size reached"
NO_SLOT = "no free slot"


@dataclass(frozen=True)
class Capacity:
    """Free places for new runs: globally, and per repository under its own limit."""

    free_global: int
    per_repo_limit: int
    live_per_repo: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_live(cls, live_repos: Iterable[str], *, max_parallel: int, per_repo_limit: int) -> Capacity:
        """The capacity left by live runs (one repository name per live run)."""
        counts = Counter(live_repos)
        return cls(max_parallel - sum(counts.values()), per_repo_limit, dict(counts))

    def free_for(self, repo: str) -> int:
        """How many more runs of ``repo`` may start."""
        return max(0, min(self.free_global, self.per_repo_limit - self.live_per_repo.get(repo, 0)))

    def taken(self, repo: str) -> Capacity:
        """The capacity after one more run of ``repo``."""
        live = {**self.live_per_repo, repo: self.live_per_repo.get(repo, 0) + 1}
        return replace(self, free_global=self.free_global - 1, live_per_repo=live)

    def limited_to(self, per_repo_limit: int) -> Capacity:
        """The same capacity under another per-repository limit (a repository's own configuration)."""
        return replace(self, per_repo_limit=per_repo_limit)


def admission_order(assessments: Iterable[Assessment], *, force: bool) -> list[Assessment]:
    """Ranked issues best score first (ties: lower number); with ``force`` high-risk rejections follow at 0."""
    items = list(assessments)
    order = sorted((item for item in items if item.outcome == "ranked"),
                   key=lambda item: (-(item.score or 0), item.number))
    if force:
        order += [
            replace(item, outcome="ranked", score=0, reason=f"admitted by --force ({item.reason})")
            for item in sorted(items, key=lambda item: item.number)
            if item.outcome == "rejected" and item.kind == "high_risk"
        ]
    return order


def forced_numbers(assessments: Iterable[Assessment], *, force: bool) -> frozenset[int]:
    """The issues ``--force`` admits against the agent's word: they become forced runs."""
    if not force:
        return frozenset()
    return frozenset(item.number for item in assessments if item.outcome == "rejected" and item.kind == "high_risk")


def admission_refusal(capacity: Capacity, repo: str, *, admitted: int, batch_size: int) -> str | None:
    """Why the next candidate of ``repo`` may not be enqueued now (None: it may)."""
    if admitted >= batch_size:
        return BATCH_FULL
    if capacity.free_for(repo) <= 0:
        return NO_SLOT
    return None
