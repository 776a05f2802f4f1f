"""When to schedule a repository: after a quiet spell, but never later than a ceiling (pure).

Every repository is debounced on its own. A change marks it dirty with ``since`` (its
first unscheduled change) and ``last`` (its latest). It is due once it has been quiet
for ``quiet`` seconds, or once ``ceiling`` seconds have passed since ``since`` — so a
steady stream of events postpones its own repository by at most the ceiling and
never delays the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Debounce:
    """The two limits: seconds of quiet wanted, and the longest a change may wait."""

    quiet: float
    ceiling: float

    def due(self, since: float, last: float, *, at: float) -> bool:
        """True when a repository first changed at ``since`` and last at ``last`` is due at ``at``."""
        return at - last >= self.quiet or at - since >= self.ceiling

    def due_repos(self, marks: Mapping[str, Mapping[str, Any]], *, at: float) -> list[str]:
        """The marked repositories that are due at ``at``, sorted."""
        due = []
        for repo, mark in marks.items():
            last = float(mark.get("last") or 0.0)
            since = float(mark.get("since") or last)
            if self.due(since, last, at=at):
                due.append(repo)
        return sorted(due)
