"""The fake GitHub's model: its resources composed over the shared wiring, without HTTP."""

from __future__ import annotations

from pathlib import Path

from agentz_app.fakehub.core import HubCore
from agentz_app.fakehub.faults import FaultConfig
from agentz_app.fakehub.resources.actions import ActionsSimulator
from agentz_app.fakehub.resources.apps import Apps
from agentz_app.fakehub.resources.checks import Checks
from agentz_app.fakehub.resources.comments import Comments, Reactions
from agentz_app.fakehub.resources.issues import Issues
from agentz_app.fakehub.resources.pulls import Pulls, Reviews
from agentz_app.fakehub.resources.pushes import Pushes
from agentz_app.fakehub.resources.repos import Repos
from agentz_app.fakehub.resources.statuses import Statuses
from agentz_app.fakehub.state import Record


class HubModel(HubCore):
    """GitHub's state and rules, one object per resource: ``hub.issues``, ``hub.pulls``, ``hub.checks``..."""

    def __init__(
        self,
        root: Path,
        *,
        webhook_url: str | None = None,
        webhook_secret: str = "fakehub-secret",
        app_id: int = 1,
        app_slug: str = "agent-z",
        private_key_pem: str | None = None,
        state_path: Path | None = None,
        faults: FaultConfig | None = None,
        ci_concurrency: int = 1,
        ci_timeout: float = 300.0,
        default_user: str = "octocat",
        webhook_backoff_seconds: float = 0.05,
        app_manifest: Record | None = None,
    ) -> None:
        super().__init__(root, webhook_url=webhook_url, webhook_secret=webhook_secret, app_id=app_id,
                         app_slug=app_slug, state_path=state_path, faults=faults, default_user=default_user,
                         webhook_backoff_seconds=webhook_backoff_seconds)
        self.apps = Apps(self, private_key_pem=private_key_pem)
        if app_manifest is not None:
            self.apps.grant(app_manifest)
        self.repos = Repos(self)
        self.issues = Issues(self)
        self.comments = Comments(self)
        self.reactions = Reactions(self, self.comments)
        self.checks = Checks(self, self.repos)
        self.statuses = Statuses(self, self.repos)
        self.actions = ActionsSimulator(self, self.checks, self.statuses, concurrency=ci_concurrency,
                                        timeout=ci_timeout)
        self.ci = self.actions.ci
        self.pushes = Pushes(self, self.issues, self.actions)
        self.pulls = Pulls(self, self.issues, self.repos, self.pushes)
        self.reviews = Reviews(self)

    async def wait_idle(self) -> None:
        """Wait until no CI job runs and no webhook is pending (bound the wait with ``asyncio.timeout``)."""
        while self.ci.pending or self.emitter.pending:
            await self.ci.wait_idle()
            await self.emitter.wait_idle()

    def activity(self) -> str:
        """What keeps the hub busy, for a wait that timed out."""
        return f"{self.ci.pending} CI jobs, {self.emitter.pending} deliveries"
