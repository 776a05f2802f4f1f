"""One router for every webhook feature: snapshots, installations, checks, triggers, runs.

Each feature module owns its ``router``; handler order across routers is undefined,
so anything that must happen in sequence lives in one handler.
"""

from __future__ import annotations

import importlib

from gidgethub import routing

from agentz_app.logs import get_logger

# Feature modules whose ``router`` is combined; the optional ones join once they exist.
FEATURE_MODULES = (
    "agentz_app.ingress.installations",
    "agentz_app.ingress.snapshots",
    "agentz_app.ingress.checks",
)
OPTIONAL_FEATURE_MODULES = (
    "agentz_app.ingress.triggers",
    "agentz_app.ingress.runs",
)

log = get_logger(__name__)


def _load(module_name: str, *, optional: bool) -> routing.Router | None:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if optional and exc.name == module_name:
            return None
        raise
    router = getattr(module, "router", None)
    if not isinstance(router, routing.Router):
        raise TypeError(f"{module_name} has no gidgethub Router named 'router'")
    return router


def feature_routers() -> list[routing.Router]:
    """Every feature module's router that is present."""
    routers = [_load(name, optional=False) for name in FEATURE_MODULES]
    routers += [_load(name, optional=True) for name in OPTIONAL_FEATURE_MODULES]
    return [router for router in routers if router is not None]


def build_router() -> routing.Router:
    """A new router combining every feature router."""
    return routing.Router(*feature_routers())
