"""The wiring every fake GitHub resource shares: state, the App, webhook emission, faults and counters."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from agentz_app.fakehub import gitrepos, grants, render
from agentz_app.fakehub.contract import TrafficObserver
from agentz_app.fakehub.faults import FaultConfig, FaultInjector
from agentz_app.fakehub.render import AppInfo, Ctx
from agentz_app.fakehub.state import HubState, Record
from agentz_app.fakehub.webhooks import WebhookEmitter


class HubCore:
    """State and cross-resource wiring: the App, the clock and ids (via state), webhooks, faults, counters."""

    def __init__(
        self,
        root: Path,
        *,
        webhook_url: str | None = None,
        webhook_secret: str = "fakehub-secret",
        app_id: int = 1,
        app_slug: str = "agent-z",
        state_path: Path | None = None,
        faults: FaultConfig | None = None,
        default_user: str = "octocat",
        webhook_backoff_seconds: float = 0.05,
    ) -> None:
        self.root = Path(root)
        self.app = AppInfo(id=app_id, slug=app_slug)
        self.state = HubState.load(state_path) if state_path else HubState()
        self.default_user = default_user
        self.faults = FaultInjector(faults)
        self.emitter = WebhookEmitter(self.state, url=webhook_url, secret=webhook_secret, app_id=app_id,
                                      faults=self.faults, on_change=self.changed,
                                      backoff_seconds=webhook_backoff_seconds)
        self.requests: Counter[str] = Counter()
        self.writes = 0
        self.write_log: list[str] = []  # "METHOD /path" of every content-creating request
        self.not_modified = 0
        self.observers: list[TrafficObserver] = []
        """Watchers of every API exchange and webhook payload (the contract tests register one)."""
        self.base_url = ""

    @property
    def api_url(self) -> str:
        """The API root (``GITHUB_API_URL``)."""
        return self.base_url

    @property
    def push_url(self) -> str:
        """Where the post-receive hooks report pushes."""
        return f"{self.base_url}/_fakehub/git/push"

    @property
    def git_url_template(self) -> str:
        """The ``GIT_URL_TEMPLATE`` reaching the bare repositories."""
        return f"file://{self.root.resolve()}/{{full_name}}.git"

    @property
    def ctx(self) -> Ctx:
        """The render context."""
        return Ctx(self.state, self.base_url, self.app)

    def changed(self) -> None:
        """Persist the state after a change."""
        self.state.save()

    def repo_git(self, full_name: str) -> Path:
        """The bare repository path of ``full_name``."""
        return gitrepos.repo_path(self.root, self.state.repo(full_name)["full_name"])

    # ---- webhooks ----------------------------------------------------------------
    def emit(self, event: str, payload: Record) -> None:
        """Queue a webhook when the App is subscribed to ``event`` and granted what it needs."""
        if not grants.receives(self.app.permissions, self.app.events, event):
            return
        for observer in self.observers:
            observer.webhook(event, payload)
        self.emitter.emit(event, payload)

    def envelope(self, repo: Record, actor: str, action: str | None = None) -> Record:
        """The fields every repository event carries (action, repository, sender, installation)."""
        return render.event_envelope(self.ctx, repo, actor, action)

    def emitted(self, event: str | None = None, action: str | None = None) -> list[Record]:
        """Events emitted so far (event, action, guid, payload), optionally filtered."""
        return [e for e in self.emitter.emitted
                if (event is None or e["event"] == event) and (action is None or e["action"] == action)]

    def set_webhook(self, *, url: str | None = None, secret: str | None = None) -> None:
        """Change where webhooks go and how they are signed."""
        if url is not None:
            self.emitter.url = url
        if secret is not None:
            self.emitter.secret = secret

    # ---- request counters --------------------------------------------------------
    def counters(self) -> Record:
        """Request counters: by method, content-creating writes and 304s."""
        return {"requests": dict(self.requests), "total": sum(self.requests.values()), "writes": self.writes,
                "not_modified": self.not_modified}

    def reset_counters(self) -> None:
        """Zero the request counters."""
        self.requests.clear()
        self.writes = 0
        self.write_log.clear()
        self.not_modified = 0
