"""Wake-up signals between processes, kept in the database (no polling of GitHub).

Ingress marks a repository dirty when something that matters to scheduling changed;
the scheduler debounces those marks into one evaluation. The marks live in the
``scheduler_dirty_marks`` table (:mod:`agentz_app.store.scheduler_state`).
"""

from __future__ import annotations

from agentz_app.store.scheduler_state import clear_dirty, dirty_repos, mark_dirty

__all__ = ["clear_dirty", "dirty_repos", "mark_dirty"]
