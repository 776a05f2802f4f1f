"""One router for every webhook feature: snapshots, installations, checks, triggers, runs.

Each feature module owns its ``router``; handler order across routers is undefined,
so anything that must happen in sequence lives in one handler. Every feature is
imported here directly: a missing or renamed one fails at start-up.
"""

from __future__ import annotations

from gidgethub import routing

from agentz_app.ingress import checks, installations, runs, snapshots, triggers

FEATURE_ROUTERS: tuple[routing.Router, ...] = (
    installations.router,
    snapshots.router,
    checks.router,
    triggers.router,
    runs.router,
)


def feature_routers() -> list[routing.Router]:
    """Every feature module's router."""
    return list(FEATURE_ROUTERS)


def build_router() -> routing.Router:
    """A new router combining every feature router."""
    return routing.Router(*FEATURE_ROUTERS)
