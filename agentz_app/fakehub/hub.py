"""FakeHub: the fake GitHub's behaviour (state changes + webhooks + git + CI) and lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from agentz_app.fakehub import gitrepos, grants, render
from agentz_app.fakehub.ci import (
    ACTIONS_APP_ID,
    DEFAULT_CI_COMMAND,
    ActionsSimulator,
    CiRunner,
    Workflow,
    workflow_record,
)
from agentz_app.fakehub.contract import TrafficObserver
from agentz_app.fakehub.faults import FaultConfig, FaultInjector
from agentz_app.fakehub.render import AppInfo, Ctx
from agentz_app.fakehub.state import HubState, NotFoundError, Record, iso
from agentz_app.fakehub.webhooks import WebhookEmitter

SUMMARY_LIMIT = 65535
MAX_ANNOTATIONS = 50
CHECK_STATUSES = ("queued", "in_progress", "completed", "waiting", "requested", "pending")
CHECK_CONCLUSIONS = ("action_required", "cancelled", "failure", "neutral", "success", "skipped", "stale",
                     "timed_out")
REACTIONS = ("+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes")
CI_APP_SLUG = "fakehub-ci"
_BODY_TOO_LONG = "Body is too long (maximum is 65536 characters)"
_CLOSING = re.compile(r"\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\s+#(\d+)", re.IGNORECASE)


class ApiError(Exception):
    """An error answered to the client with GitHub's error body."""

    def __init__(self, status: int, message: str, *, errors: list[Record] | list[str] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.message = message
        self.errors = errors
        self.headers = headers or {}
        super().__init__(f"{status} {message}")

    @classmethod
    def validation(cls, resource: str, field: str, code: str = "invalid", message: str | None = None) -> ApiError:
        """A 422 Validation Failed with one error item."""
        item: Record = {"resource": resource, "field": field, "code": code}
        if message:
            item["message"] = message
        return cls(422, "Validation Failed", errors=[item])


def _text(value: Any, name: str, *, required: bool = False, limit: int | None = None) -> str | None:
    if value is None:
        if required:
            raise ApiError.validation("Issue", name, "missing_field")
        return None
    if not isinstance(value, str):
        raise ApiError(422, f"Invalid request.\n\n{name} is not a string.")
    if limit is not None and len(value) > limit:
        raise ApiError(422, f"Invalid request.\n\n{name} is too long (maximum is {limit} characters).")
    return value


def names_list(value: Any, name: str) -> list[str]:
    """Label or assignee names from a JSON list (or ``{name: [...]}``), validated."""
    if isinstance(value, dict) and name in value:
        value = value[name]
    if not isinstance(value, list) or not all(isinstance(v, str | dict) for v in value):
        raise ApiError(422, f"Invalid request.\n\n{name} must be a list of strings.")
    return [v["name"] if isinstance(v, dict) else v for v in value]


class FakeHub:
    """A fake GitHub: REST API, signed webhooks, real bare git repos, simulated CI and faults."""

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
        self.root = Path(root)
        self.app = AppInfo(id=app_id, slug=app_slug)
        if app_manifest is not None:
            self.grant(app_manifest)
        self.public_key_pem: bytes | None = None
        if private_key_pem:
            key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
            self.public_key_pem = key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.state = HubState.load(state_path) if state_path else HubState()
        self.default_user = default_user
        self.faults = FaultInjector(faults)
        self.emitter = WebhookEmitter(self.state, url=webhook_url, secret=webhook_secret, app_id=app_id,
                                      faults=self.faults, on_change=self.changed,
                                      backoff_seconds=webhook_backoff_seconds)
        self.actions = ActionsSimulator(self)
        self.ci = CiRunner(on_start=self.actions.job_started, on_finish=self.actions.job_finished,
                           concurrency=ci_concurrency, timeout=ci_timeout)
        self.requests: Counter[str] = Counter()
        self.writes = 0
        self.write_log: list[str] = []  # "METHOD /path" of every content-creating request
        self.not_modified = 0
        self.observers: list[TrafficObserver] = []
        """Watchers of every API exchange and webhook payload (the contract tests register one)."""
        self.base_url = ""
        self._runner: web.AppRunner | None = None
        self._push_lock = asyncio.Lock()

    # ---- lifecycle ---------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve the API on ``host:port`` (0 = any free port) and return the API URL."""
        from agentz_app.fakehub.server import create_app

        self.root.mkdir(parents=True, exist_ok=True)
        await self.emitter.start()
        self._runner = web.AppRunner(create_app(self), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        bound_port = int(sockets[0].getsockname()[1]) if sockets else port
        self.base_url = f"http://{host}:{bound_port}"
        for full_name in self.state.data["repos"]:
            path = gitrepos.repo_path(self.root, full_name)
            if path.exists():
                gitrepos.write_hook(path, notify_url=self.push_url, full_name=full_name)
        return self.base_url

    async def stop(self) -> None:
        """Stop serving, cancel CI (killing its processes) and webhook delivery."""
        await self.ci.stop()
        await self.emitter.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.changed()

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

    async def wait_idle(self, timeout: float = 60.0) -> None:
        """Wait until no CI job runs and no webhook is pending."""
        deadline = time.monotonic() + timeout
        while self.ci.pending or self.emitter.pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"not idle: {self.ci.pending} CI jobs, {self.emitter.pending} deliveries")
            await asyncio.sleep(0.02)

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

    def grant(self, manifest: Record) -> None:
        """Give the App the permissions and event subscriptions of an App manifest (422 if GitHub refuses it)."""
        permissions = manifest.get("default_permissions") or {}
        events = manifest.get("default_events") or []
        if not isinstance(permissions, dict) or not isinstance(events, list):
            raise ApiError(422, "Invalid GitHub App configuration")
        unsupported = grants.unsupported_events(permissions, [str(e) for e in events])
        if unsupported:
            raise ApiError(422, "Validation Failed",
                           errors=["Default events are not supported by permissions: " + ", ".join(unsupported)])
        self.app.permissions = {str(k): str(v) for k, v in permissions.items()}
        self.app.permissions.setdefault("metadata", "read")
        self.app.events = [str(e) for e in events]

    def subscribe(self, *events: str) -> None:
        """Subscribe the App to more events (a test's App settings change)."""
        self.app.events = list(dict.fromkeys([*self.app.events, *events]))

    def _emit(self, event: str, payload: Record) -> None:
        if not grants.receives(self.app.permissions, self.app.events, event):
            return
        for observer in self.observers:
            observer.webhook(event, payload)
        self.emitter.emit(event, payload)

    def _envelope(self, repo: Record, actor: str, action: str | None = None) -> Record:
        return render.event_envelope(self.ctx, repo, actor, action)

    # ---- app, installations, tokens ---------------------------------------------
    def issue_token(self, installation_id: int) -> Record:
        """Create an installation access token."""
        self.state.installation(installation_id)
        token = "ghs_" + secrets.token_urlsafe(27)
        expires = time.time() + 3600
        self.state.data["tokens"][token] = {"installation_id": installation_id, "expires_at": expires}
        self.changed()
        return {"token": token, "expires_at": iso(expires), "permissions": render.app(self.ctx)["permissions"],
                "repository_selection": "all"}

    def token_installation(self, token: str) -> int | None:
        """The installation a live token belongs to, or None."""
        rec = self.state.data["tokens"].get(token)
        if rec is None or rec["expires_at"] < time.time():
            return None
        return int(rec["installation_id"])

    def create_manifest_code(self, manifest: Record) -> str:
        """Register an App manifest and return the one-time code GitHub would redirect with."""
        code = secrets.token_hex(10)
        self.state.data["manifest_codes"][code] = {"manifest": manifest}
        self.changed()
        return code

    def convert_manifest(self, code: str) -> Record:
        """Exchange a manifest code for the new App's credentials; the fake adopts that App."""
        entry = self.state.data["manifest_codes"].pop(code, None)
        if entry is None:
            raise ApiError(404, "Not Found")
        manifest = entry["manifest"]
        self.grant(manifest)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode()
        name = str(manifest.get("name") or "agent-z")
        slug = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "agent-z"
        webhook_secret = secrets.token_hex(20)
        self.app = AppInfo(id=self.state.new_id(), slug=slug, name=name, permissions=self.app.permissions,
                           events=self.app.events)
        self.public_key_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        self.emitter.app_id = self.app.id
        hook = manifest.get("hook_attributes") or {}
        self.set_webhook(url=hook.get("url") or None, secret=webhook_secret)
        self.changed()
        out = render.app(self.ctx)
        out.update({"pem": pem, "webhook_secret": webhook_secret, "client_id": f"Iv1.{secrets.token_hex(8)}",
                    "client_secret": secrets.token_hex(20)})
        return out

    # ---- repositories ------------------------------------------------------------
    async def create_repo(self, full_name: str, files: dict[str, str] | None = None, *,
                          ci_command: str | None = DEFAULT_CI_COMMAND, default_branch: str = "main",
                          private: bool = False, description: str | None = None) -> Record:
        """Create a repository backed by a bare git repo holding ``files`` on ``default_branch``."""
        owner, sep, name = full_name.partition("/")
        if not sep or not re.fullmatch(r"[A-Za-z0-9_.-]+", owner) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ApiError(422, f"Invalid repository name {full_name!r}")
        if full_name in self.state.data["repos"]:
            raise ApiError.validation("Repository", "name", "custom", "name already exists on this account")
        path = gitrepos.repo_path(self.root, full_name)
        await gitrepos.create_bare_repo(path, files or {}, default_branch=default_branch)
        if self.base_url:
            gitrepos.write_hook(path, notify_url=self.push_url, full_name=full_name)
        now = self.state.now()
        installation = self.state.installation_for_owner(owner)
        self.state.user(owner)
        repo = {"id": self.state.new_id(), "name": name, "full_name": full_name, "owner": owner,
                "private": private, "description": description, "default_branch": default_branch,
                "clone_url": self.git_url_template.format(full_name=full_name), "created_at": now,
                "updated_at": now, "pushed_at": now, "installation_id": installation["id"],
                "ci_command": ci_command, "next_number": 1}
        self.state.data["repos"][full_name] = repo
        self.changed()
        return render.repository(self.ctx, repo)

    def set_ci_command(self, full_name: str, command: str | None) -> None:
        """Change (or disable with None) a repository's CI command."""
        self.state.repo(full_name)["ci_command"] = command
        self.changed()

    def set_workflows(self, full_name: str, workflows: list[Workflow] | None) -> None:
        """Give a repository GitHub Actions workflows (None: one ``CI`` workflow running its CI command)."""
        self.state.repo(full_name)["workflows"] = None if workflows is None else [workflow_record(w)
                                                                                  for w in workflows]
        self.changed()

    def repo_git(self, full_name: str) -> Path:
        """The bare repository path of ``full_name``."""
        return gitrepos.repo_path(self.root, self.state.repo(full_name)["full_name"])

    def add_user(self, login: str) -> None:
        """Make ``login`` a GitHub user (one who has not acted yet)."""
        self.state.user(login)
        self.changed()

    def set_permission(self, full_name: str, login: str, role: str) -> None:
        """Give ``login`` a role on a repository (admin, maintain, write, triage, read, none)."""
        try:
            self.state.set_permission(full_name, login, role)
        except ValueError as exc:
            raise ApiError(422, str(exc)) from exc
        self.changed()

    def permission_json(self, full_name: str, login: str) -> Record:
        """The collaborator permission answer for ``login``, as GitHub gives it.

        Anyone GitHub knows gets an answer (``read`` on a public repository when not a
        collaborator, ``none`` on a private one); a login that is no user, such as an App's
        ``name[bot]``, is a 404.
        """
        known = {name.lower() for name in self.state.data["users"]}
        if login.lower().endswith("[bot]") or login.lower() not in known:
            raise ApiError(404, "Not Found")
        role = self.state.permission(full_name, login)
        legacy = {"admin": "admin", "maintain": "write", "write": "write", "triage": "read", "read": "read"}
        order = ["read", "triage", "write", "maintain", "admin"]
        rank = order.index(role) if role in order else -1
        user = render.user(self.ctx, login)
        user["permissions"] = {"pull": rank >= 0, "triage": rank >= 1, "push": rank >= 2, "maintain": rank >= 3,
                               "admin": rank >= 4}
        user["role_name"] = role
        return {"permission": legacy.get(role, "none"), "role_name": role, "user": user}

    # ---- issues ------------------------------------------------------------------
    def _issue_event(self, rec: Record, action: str, actor: str, **extra: Any) -> None:
        repo = self.state.repo(rec["repo"])
        payload = self._envelope(repo, actor, action)
        if rec.get("pull"):
            payload["number"] = rec["number"]
            payload["pull_request"] = render.pull_request(self.ctx, rec)
            self._emit_with(payload, extra, "pull_request")
        else:
            payload["issue"] = render.issue(self.ctx, rec)
            self._emit_with(payload, extra, "issues")

    def _emit_with(self, payload: Record, extra: Record, event: str) -> None:
        payload.update(extra)
        self._emit(event, payload)

    def create_issue(self, full_name: str, title: str, body: str | None = "", *, user: str | None = None,
                     labels: Iterable[str] = (), assignees: Iterable[str] = ()) -> Record:
        """Open an issue as ``user`` (default: the default user) and emit ``issues.opened``."""
        actor = user or self.default_user
        if not title or not isinstance(title, str):
            raise ApiError.validation("Issue", "title", "missing_field")
        number = self.state.next_number(full_name)
        now = self.state.now()
        repo = self.state.repo(full_name)
        rec: Record = {"id": self.state.new_id(), "number": number, "repo": repo["full_name"], "title": title,
                       "body": body, "state": "open", "state_reason": None, "labels": [], "assignees": [],
                       "user": actor, "created_at": now, "updated_at": now, "closed_at": None,
                       "via_app": actor == self.app.bot_login}
        for name in labels:
            rec["labels"].append(self.state.label(full_name, name)["name"])
        rec["assignees"] = list(dict.fromkeys(assignees))
        self.state.issues_of(full_name)[str(number)] = rec
        self._issue_event(rec, "opened", actor)
        self.changed()
        return render.issue(self.ctx, rec)

    def get_issue(self, full_name: str, number: int) -> Record:
        """The issue (or pull request as an issue)."""
        return render.issue(self.ctx, self.state.issue(full_name, number))

    def list_issues(self, full_name: str, *, state: str = "open", labels: str | None = None,
                    direction: str = "desc", since: str | None = None) -> list[Record]:
        """Issues and pull requests filtered like ``GET /repos/{o}/{r}/issues``."""
        if state not in ("open", "closed", "all"):
            raise ApiError.validation("Issue", "state")
        wanted = [w.strip().lower() for w in labels.split(",") if w.strip()] if labels else []
        records = [r for r in self.state.issues_of(full_name).values()
                   if (state == "all" or r["state"] == state)
                   and all(w in [n.lower() for n in r["labels"]] for w in wanted)
                   and (since is None or r["updated_at"] >= since)]
        records.sort(key=lambda r: r["number"], reverse=direction != "asc")
        return [render.issue(self.ctx, r) for r in records]

    def update_issue(self, full_name: str, number: int, changes: Record, *, actor: str) -> Record:
        """Apply a PATCH (title, body, state, state_reason, labels, assignees) and emit its events."""
        rec = self.state.issue(full_name, number)
        title = _text(changes.get("title"), "title", limit=256)
        body = _text(changes.get("body"), "body", limit=65536)
        edits: Record = {}
        if "title" in changes and title is not None and title != rec["title"]:
            edits["title"] = {"from": rec["title"]}
            rec["title"] = title
        if "body" in changes and body != rec["body"]:
            edits["body"] = {"from": rec["body"]}
            rec["body"] = body
        events: list[tuple[str, Record]] = []
        if edits:
            events.append(("edited", {"changes": edits}))
        if "labels" in changes:
            wanted = [self.state.label(full_name, n)["name"] for n in names_list(changes["labels"], "labels")]
            events += self._set_labels(rec, wanted, full_name)
        if "assignees" in changes:
            events += self._set_assignees(rec, names_list(changes["assignees"], "assignees"))
        if "state" in changes:
            events += self._set_state(rec, changes["state"], changes.get("state_reason"))
        elif "state_reason" in changes and rec["state"] == "closed":
            rec["state_reason"] = changes["state_reason"]
        rec["updated_at"] = self.state.now()
        for action, extra in events:
            self._issue_event(rec, action, actor, **extra)
        self.changed()
        return render.issue(self.ctx, rec)

    def _set_state(self, rec: Record, state: Any, reason: Any) -> list[tuple[str, Record]]:
        if state not in ("open", "closed"):
            raise ApiError.validation("Issue", "state")
        if reason not in (None, "completed", "not_planned", "reopened", "duplicate"):
            raise ApiError.validation("Issue", "state_reason")
        if state == rec["state"]:
            return []
        rec["state"] = state
        if state == "closed":
            rec["state_reason"] = reason or "completed"
            rec["closed_at"] = self.state.now()
            return [("closed", {})]
        rec["state_reason"] = "reopened"
        rec["closed_at"] = None
        return [("reopened", {})]

    def _set_labels(self, rec: Record, wanted: list[str], full_name: str) -> list[tuple[str, Record]]:
        events: list[tuple[str, Record]] = []
        for name in list(rec["labels"]):
            if name not in wanted:
                rec["labels"].remove(name)
                events.append(("unlabeled", {"label": render.label(self.ctx, full_name, name)}))
        for name in wanted:
            if name not in rec["labels"]:
                rec["labels"].append(name)
                events.append(("labeled", {"label": render.label(self.ctx, full_name, name)}))
        return events

    def _set_assignees(self, rec: Record, wanted: list[str]) -> list[tuple[str, Record]]:
        events: list[tuple[str, Record]] = []
        for login in list(rec["assignees"]):
            if login not in wanted:
                rec["assignees"].remove(login)
                events.append(("unassigned", {"assignee": render.user(self.ctx, login)}))
        for login in wanted:
            if login not in rec["assignees"]:
                rec["assignees"].append(login)
                events.append(("assigned", {"assignee": render.user(self.ctx, login)}))
        return events

    def add_labels(self, full_name: str, number: int, names: list[str], *, actor: str) -> list[Record]:
        """Add labels to an issue; return all its labels."""
        rec = self.state.issue(full_name, number)
        wanted = list(rec["labels"]) + [self.state.label(full_name, n)["name"] for n in names]
        self._apply(rec, self._set_labels(rec, list(dict.fromkeys(wanted)), full_name), actor)
        return [render.label(self.ctx, full_name, n) for n in rec["labels"]]

    def set_labels(self, full_name: str, number: int, names: list[str], *, actor: str) -> list[Record]:
        """Replace an issue's labels (``PUT .../labels``); return them."""
        rec = self.state.issue(full_name, number)
        wanted = [self.state.label(full_name, n)["name"] for n in names]
        self._apply(rec, self._set_labels(rec, list(dict.fromkeys(wanted)), full_name), actor)
        return [render.label(self.ctx, full_name, n) for n in rec["labels"]]

    def remove_label(self, full_name: str, number: int, name: str, *, actor: str) -> list[Record]:
        """Remove one label from an issue (404 if absent); return the remaining labels."""
        rec = self.state.issue(full_name, number)
        matching = [n for n in rec["labels"] if n.lower() == name.lower()]
        if not matching:
            raise ApiError(404, "Label does not exist")
        wanted = [n for n in rec["labels"] if n not in matching]
        self._apply(rec, self._set_labels(rec, wanted, full_name), actor)
        return [render.label(self.ctx, full_name, n) for n in rec["labels"]]

    def change_assignees(self, full_name: str, number: int, logins: list[str], *, add: bool, actor: str) -> Record:
        """Add or remove assignees; return the issue."""
        rec = self.state.issue(full_name, number)
        wanted = (list(dict.fromkeys(rec["assignees"] + logins)) if add
                  else [a for a in rec["assignees"] if a not in logins])
        self._apply(rec, self._set_assignees(rec, wanted), actor)
        return render.issue(self.ctx, rec)

    def _apply(self, rec: Record, events: list[tuple[str, Record]], actor: str) -> None:
        if events:
            rec["updated_at"] = self.state.now()
        for action, extra in events:
            self._issue_event(rec, action, actor, **extra)
        self.changed()

    # ---- comments and reactions --------------------------------------------------
    def _comment_event(self, rec: Record, action: str, actor: str, **extra: Any) -> None:
        issue = self.state.issue(rec["repo"], rec["issue_number"])
        payload = self._envelope(self.state.repo(rec["repo"]), actor, action)
        payload["issue"] = render.issue(self.ctx, issue)
        payload["comment"] = render.comment(self.ctx, rec)
        payload.update(extra)
        self._emit("issue_comment", payload)

    def add_comment(self, full_name: str, number: int, body: str, *, user: str | None = None) -> Record:
        """Comment on an issue or pull request and emit ``issue_comment.created``."""
        actor = user or self.default_user
        issue = self.state.issue(full_name, number)
        if not isinstance(body, str) or not body:
            raise ApiError.validation("IssueComment", "body", "missing_field")
        if len(body) > 65536:
            raise ApiError.validation("IssueComment", "body", "custom", _BODY_TOO_LONG)
        now = self.state.now()
        rec = {"id": self.state.new_id(), "repo": issue["repo"], "issue_number": number, "body": body,
               "user": actor, "created_at": now, "updated_at": now, "via_app": actor == self.app.bot_login}
        self.state.data["comments"][str(rec["id"])] = rec
        issue["updated_at"] = now
        self._comment_event(rec, "created", actor)
        self.changed()
        return render.comment(self.ctx, rec)

    def list_comments(self, full_name: str, number: int, *, since: str | None = None) -> list[Record]:
        """Comments of an issue, oldest first."""
        issue = self.state.issue(full_name, number)
        recs = [c for c in self.state.data["comments"].values()
                if c["repo"] == issue["repo"] and c["issue_number"] == number
                and (since is None or c["updated_at"] >= since)]
        return [render.comment(self.ctx, c) for c in sorted(recs, key=lambda c: c["id"])]

    def _comment(self, full_name: str, comment_id: int) -> Record:
        rec = self.state.by_id("comments", comment_id)
        if rec["repo"].lower() != self.state.repo(full_name)["full_name"].lower():
            raise NotFoundError(f"comment {comment_id}")
        return rec

    def get_comment(self, full_name: str, comment_id: int) -> Record:
        """One issue comment."""
        return render.comment(self.ctx, self._comment(full_name, comment_id))

    def edit_comment(self, full_name: str, comment_id: int, body: Any, *, actor: str) -> Record:
        """Edit a comment's body and emit ``issue_comment.edited``."""
        rec = self._comment(full_name, comment_id)
        if not isinstance(body, str) or not body:
            raise ApiError.validation("IssueComment", "body", "missing_field")
        if len(body) > 65536:
            raise ApiError.validation("IssueComment", "body", "custom", _BODY_TOO_LONG)
        old = rec["body"]
        rec["body"] = body
        rec["updated_at"] = self.state.now()
        if old != body:
            self._comment_event(rec, "edited", actor, changes={"body": {"from": old}})
        self.changed()
        return render.comment(self.ctx, rec)

    def delete_comment(self, full_name: str, comment_id: int, *, actor: str) -> None:
        """Delete a comment and emit ``issue_comment.deleted``."""
        rec = self._comment(full_name, comment_id)
        self._comment_event(rec, "deleted", actor)
        del self.state.data["comments"][str(comment_id)]
        self.changed()

    def add_reaction(self, full_name: str, content: Any, *, actor: str, issue_number: int | None = None,
                     comment_id: int | None = None) -> tuple[Record, bool]:
        """React to an issue or comment; return (reaction, created)."""
        if content not in REACTIONS:
            raise ApiError.validation("Reaction", "content")
        if issue_number is not None:
            self.state.issue(full_name, issue_number)
        if comment_id is not None:
            self._comment(full_name, comment_id)
        for rec in self.state.data["reactions"].values():
            if (rec["user"], rec["content"], rec.get("issue_number"), rec.get("comment_id"), rec["repo"]) == (
                    actor, content, issue_number, comment_id, full_name):
                return self._reaction_json(rec), False
        rec = {"id": self.state.new_id(), "repo": full_name, "issue_number": issue_number, "comment_id": comment_id,
               "content": content, "user": actor, "created_at": self.state.now()}
        self.state.data["reactions"][str(rec["id"])] = rec
        self.changed()
        return self._reaction_json(rec), True

    def _reaction_json(self, rec: Record) -> Record:
        return {"id": rec["id"], "node_id": render.node_id("REA", rec["id"]), "content": rec["content"],
                "user": render.user(self.ctx, rec["user"]), "created_at": rec["created_at"]}

    # ---- pull requests -----------------------------------------------------------
    def _parse_head(self, full_name: str, head: Any) -> tuple[str, str]:
        if not isinstance(head, str) or not head:
            raise ApiError.validation("PullRequest", "head", "missing_field")
        owner, sep, ref = head.partition(":")
        if not sep:
            owner, ref = self.state.repo(full_name)["owner"], head
        return owner, ref

    async def create_pull(self, full_name: str, body: Record, *, actor: str) -> Record:
        """Open a pull request like ``POST /repos/{o}/{r}/pulls`` (422 on a duplicate head)."""
        repo = self.state.repo(full_name)
        title = _text(body.get("title"), "title", limit=256)
        if not title:
            raise ApiError.validation("PullRequest", "title", "missing_field")
        head_owner, head_ref = self._parse_head(full_name, body.get("head"))
        if body.get("maintainer_can_modify") and actor == self.app.bot_login:
            # Only a person who can push to the fork may grant it; an App never can.
            raise ApiError.validation("PullRequest", "maintainer_can_modify", "custom",
                                      "Fork collab can't be granted by someone without permission")
        base_ref = body.get("base")
        if not isinstance(base_ref, str) or not base_ref:
            raise ApiError.validation("PullRequest", "base", "missing_field")
        path = self.repo_git(full_name)
        base_sha = await gitrepos.rev_parse(path, f"refs/heads/{base_ref}")
        if base_sha is None:
            raise ApiError.validation("PullRequest", "base")
        head_sha = await gitrepos.rev_parse(path, f"refs/heads/{head_ref}")
        if head_sha is None:
            raise ApiError.validation("PullRequest", "head")
        for other in self.state.issues_of(full_name).values():
            pull = other.get("pull")
            if (pull and other["state"] == "open" and pull["head_ref"] == head_ref
                    and pull["head_owner"] == head_owner and pull["base_ref"] == base_ref):
                raise ApiError(422, "Validation Failed", errors=[{
                    "resource": "PullRequest", "code": "custom",
                    "message": f"A pull request already exists for {head_owner}:{head_ref}."}])
        if await gitrepos.merge_base(path, head_sha, base_sha) == head_sha:
            raise ApiError(422, "Validation Failed", errors=[{
                "resource": "PullRequest", "code": "custom",
                "message": f"No commits between {base_ref} and {head_ref}"}])
        number = self.state.next_number(full_name)
        now = self.state.now()
        rec: Record = {"id": self.state.new_id(), "number": number, "repo": repo["full_name"], "title": title,
                       "body": _text(body.get("body"), "body", limit=65536), "state": "open", "state_reason": None,
                       "labels": [], "assignees": [], "user": actor, "created_at": now, "updated_at": now,
                       "closed_at": None, "via_app": actor == self.app.bot_login,
                       "pull": {"head_ref": head_ref, "head_owner": head_owner, "head_sha": head_sha,
                                "base_ref": base_ref, "base_sha": base_sha, "draft": bool(body.get("draft")),
                                "merged": False, "merged_at": None, "merge_commit_sha": None, "merged_by": None}}
        self.state.issues_of(full_name)[str(number)] = rec
        self._issue_event(rec, "opened", actor)
        self.changed()
        return await self.get_pull(full_name, number)

    def request_reviewers(self, full_name: str, number: int, body: Record, *, actor: str) -> Record:
        """``POST /pulls/{n}/requested_reviewers``: collaborators only, never the author (422 like GitHub)."""
        rec = self.state.pull(full_name, number)
        wanted = names_list(body.get("reviewers", []), "reviewers")
        repo = self.state.repo(full_name)
        collaborators = {login.lower() for login, role in self.state.data["permissions"].get(
            repo["full_name"], {}).items() if role != "none"} | {repo["owner"].lower()}
        for login in wanted:
            if login.lower() == str(rec["user"]).lower():
                raise ApiError(422, "Review cannot be requested from pull request author.")
            if login.lower() not in collaborators:
                raise ApiError(422, "Reviews may only be requested from collaborators. One or more of the users "
                                    f"or teams you specified is not a collaborator of the {full_name} repository.")
        pending = rec["pull"].setdefault("requested_reviewers", [])
        for login in wanted:
            if login.lower() not in {name.lower() for name in pending}:
                pending.append(login)
                self._issue_event(rec, "review_requested", actor,
                                  requested_reviewer=render.user(self.ctx, login))
        self.changed()
        return render.pull_request(self.ctx, rec)

    async def get_pull(self, full_name: str, number: int) -> Record:
        """A pull request, with ``mergeable`` computed from the bare repo."""
        rec = self.state.pull(full_name, number)
        if rec["state"] == "open":
            rec["pull"]["mergeable"] = await gitrepos.is_mergeable(
                self.repo_git(full_name), base=rec["pull"]["base_ref"], head=rec["pull"]["head_sha"])
        return render.pull_request(self.ctx, rec)

    def list_pulls(self, full_name: str, *, state: str = "open", head: str | None = None, base: str | None = None,
                   direction: str = "desc") -> list[Record]:
        """Pull requests filtered like ``GET /repos/{o}/{r}/pulls``."""
        if state not in ("open", "closed", "all"):
            raise ApiError.validation("PullRequest", "state")
        head_owner = head_ref = None
        if head:
            head_owner, _, head_ref = head.partition(":") if ":" in head else ("", "", head)
        out = []
        for rec in self.state.issues_of(full_name).values():
            pull = rec.get("pull")
            if not pull or (state != "all" and rec["state"] != state):
                continue
            if head_ref is not None and (pull["head_ref"] != head_ref
                                         or (head_owner and pull["head_owner"].lower() != head_owner.lower())):
                continue
            if base is not None and pull["base_ref"] != base:
                continue
            out.append(rec)
        out.sort(key=lambda r: r["number"], reverse=direction != "asc")
        return [render.pull_request(self.ctx, r) for r in out]

    async def update_pull(self, full_name: str, number: int, changes: Record, *, actor: str) -> Record:
        """PATCH a pull request: title, body, state, base."""
        rec = self.state.pull(full_name, number)
        if "base" in changes:
            base = changes["base"]
            if not isinstance(base, str) or await gitrepos.rev_parse(self.repo_git(full_name),
                                                                     f"refs/heads/{base}") is None:
                raise ApiError.validation("PullRequest", "base")
            if base != rec["pull"]["base_ref"]:
                rec["pull"]["base_ref"] = base
                changes = {**changes, "_base_changed": True}
        if rec["pull"].get("merged") and changes.get("state") == "open":
            raise ApiError.validation("PullRequest", "state", "custom", "merged pull requests cannot be reopened")
        issue_changes = {k: v for k, v in changes.items() if k in ("title", "body", "state")}
        self.update_issue(full_name, number, issue_changes, actor=actor)
        return await self.get_pull(full_name, number)

    async def merge_pull(self, full_name: str, number: int, *, actor: str | None = None, sha: str | None = None,
                         merge_method: str = "merge", commit_title: str | None = None) -> Record:
        """Merge a pull request in the bare repo, emit ``pull_request.closed`` (merged) and the push."""
        actor = actor or self.default_user
        rec = self.state.pull(full_name, number)
        pull = rec["pull"]
        if merge_method not in ("merge", "squash", "rebase"):
            raise ApiError.validation("PullRequest", "merge_method")
        if rec["state"] != "open":
            raise ApiError(405, "Pull Request is not mergeable")
        if sha is not None and sha != pull["head_sha"]:
            raise ApiError(409, "Head branch was modified. Review and try the merge again.")
        path = self.repo_git(full_name)
        async with self._push_lock:
            before = await gitrepos.rev_parse(path, f"refs/heads/{pull['base_ref']}")
            message = commit_title or f"Merge pull request #{number} from {pull['head_owner']}/{pull['head_ref']}"
            if merge_method != "merge":
                message = commit_title or f"{rec['title']} (#{number})"
            new_sha = await gitrepos.merge(path, base=pull["base_ref"], head=pull["head_sha"], message=message,
                                           method=merge_method)
        if new_sha is None or before is None:
            raise ApiError(405, "Pull Request is not mergeable")
        now = self.state.now()
        rec.update({"state": "closed", "closed_at": now, "updated_at": now})
        pull.update({"merged": True, "merged_at": now, "merge_commit_sha": new_sha, "merged_by": actor})
        self._issue_event(rec, "closed", actor)
        await self.handle_push(full_name, [{"before": before, "after": new_sha,
                                            "ref": f"refs/heads/{pull['base_ref']}"}], pusher=actor)
        for match in _CLOSING.finditer(rec.get("body") or ""):
            target = self.state.issues_of(full_name).get(match.group(1))
            if target and not target.get("pull") and target["state"] == "open":
                self.update_issue(full_name, target["number"], {"state": "closed", "state_reason": "completed"},
                                  actor=actor)
        self.changed()
        return {"sha": new_sha, "merged": True, "message": "Pull Request successfully merged"}

    async def pull_files(self, full_name: str, number: int) -> list[Record]:
        """Files changed by a pull request."""
        pull = self.state.pull(full_name, number)["pull"]
        base = pull.get("base_sha") or f"refs/heads/{pull['base_ref']}"
        if not pull.get("merged"):
            base = await gitrepos.rev_parse(self.repo_git(full_name), f"refs/heads/{pull['base_ref']}") or base
        files = await gitrepos.changed_files(self.repo_git(full_name), base=base, head=pull["head_sha"])
        repo = self.state.repo(full_name)["full_name"]
        return [render.diff_entry(self.ctx, repo, pull["head_sha"], f) for f in files]

    def create_review(self, full_name: str, number: int, body: Record, *, actor: str) -> Record:
        """Submit a review (APPROVE, REQUEST_CHANGES, COMMENT; pending without ``event``)."""
        rec = self.state.pull(full_name, number)
        event = body.get("event")
        states = {"APPROVE": "APPROVED", "REQUEST_CHANGES": "CHANGES_REQUESTED", "COMMENT": "COMMENTED",
                  None: "PENDING"}
        if event not in states:
            raise ApiError.validation("PullRequestReview", "event")
        text = _text(body.get("body"), "body", limit=65536) or ""
        comments = body.get("comments") or []
        if not isinstance(comments, list):
            raise ApiError(422, "Invalid request.\n\ncomments must be a list.")
        if event in ("REQUEST_CHANGES", "COMMENT") and not text and not comments:
            raise ApiError(422, "Unprocessable Entity", errors=[f"Review body is required for {event}"])  # type: ignore[list-item]
        if event in ("APPROVE", "REQUEST_CHANGES") and actor == rec["user"]:
            verb = "approve" if event == "APPROVE" else "request changes on"
            raise ApiError(422, "Unprocessable Entity", errors=[f"Can not {verb} your own pull request"])  # type: ignore[list-item]
        commit_id = body.get("commit_id") or rec["pull"]["head_sha"]
        now = self.state.now()
        review = {"id": self.state.new_id(), "repo": rec["repo"], "pull_number": number, "user": actor,
                  "body": text, "state": states[event], "commit_id": commit_id,
                  "submitted_at": now if event else None}
        self.state.data["reviews"][str(review["id"])] = review
        created = []
        for item in comments:
            if not isinstance(item, dict) or not item.get("path") or not item.get("body"):
                raise ApiError.validation("PullRequestReviewComment", "path", "missing_field")
            c = {"id": self.state.new_id(), "repo": rec["repo"], "pull_number": number, "review_id": review["id"],
                 "path": item["path"], "line": item.get("line"), "side": item.get("side", "RIGHT"),
                 "position": item.get("position"), "body": item["body"], "user": actor, "commit_id": commit_id,
                 "created_at": now, "updated_at": now}
            self.state.data["review_comments"][str(c["id"])] = c
            created.append(c)
        rec["updated_at"] = now
        if event:
            repo = self.state.repo(full_name)
            payload = self._envelope(repo, actor, "submitted")
            payload["review"] = render.review(self.ctx, review)
            payload["pull_request"] = render.pull_request(self.ctx, rec)
            self._emit("pull_request_review", payload)
            for c in created:
                payload = self._envelope(repo, actor, "created")
                payload["comment"] = render.review_comment(self.ctx, c)
                payload["pull_request"] = render.pull_request(self.ctx, rec)
                self._emit("pull_request_review_comment", payload)
        self.changed()
        return render.review(self.ctx, review)

    def list_reviews(self, full_name: str, number: int) -> list[Record]:
        """Reviews of a pull request, oldest first."""
        rec = self.state.pull(full_name, number)
        return [render.review(self.ctx, r) for r in sorted(self.state.data["reviews"].values(), key=lambda r: r["id"])
                if r["repo"] == rec["repo"] and r["pull_number"] == number]

    def list_review_comments(self, full_name: str, number: int, *, review_id: int | None = None) -> list[Record]:
        """Inline review comments of a pull request (or of one of its reviews), oldest first."""
        rec = self.state.pull(full_name, number)
        if review_id is not None:
            review = self.state.by_id("reviews", review_id)
            if review["repo"] != rec["repo"] or review["pull_number"] != number:
                raise NotFoundError(f"review {review_id}")
        return [render.review_comment(self.ctx, c)
                for c in sorted(self.state.data["review_comments"].values(), key=lambda c: c["id"])
                if c["repo"] == rec["repo"] and c["pull_number"] == number
                and (review_id is None or c.get("review_id") == review_id)]

    # ---- checks ------------------------------------------------------------------
    def _pulls_for_sha(self, full_name: str, sha: str) -> list[Record]:
        repo = self.state.repo(full_name)
        return [r for r in self.state.issues_of(full_name).values()
                if r.get("pull") and r["state"] == "open" and r["pull"]["head_sha"] == sha
                and r["pull"]["head_owner"] == repo["owner"]]

    def _suite_for(self, full_name: str, sha: str, *, app_slug: str, branch: str | None,
                   before: str | None = None) -> Record:
        suites: dict[str, Record] = self.state.data["check_suites"]
        for existing in suites.values():
            if existing["repo"] == full_name and existing["head_sha"] == sha and existing["app_slug"] == app_slug:
                return existing
        now = self.state.now()
        rec: Record = {"id": self.state.new_id(), "repo": full_name, "head_sha": sha, "head_branch": branch,
               "app_slug": app_slug, "app_id": self.app.id if app_slug == self.app.slug else 2,
               "before": before, "created_at": now, "updated_at": now}
        self.state.data["check_suites"][str(rec["id"])] = rec
        return rec

    def check_run_json(self, rec: Record) -> Record:
        """A check run as the API returns it."""
        return render.check_run(self.ctx, rec, pulls=self._pulls_for_sha(rec["repo"], rec["head_sha"]))

    def check_suite_json(self, rec: Record) -> Record:
        """A check suite as the API returns it."""
        return render.check_suite(self.ctx, rec, pulls=self._pulls_for_sha(rec["repo"], rec["head_sha"]))

    def _check_event(self, rec: Record, action: str, actor: str, **extra: Any) -> None:
        payload = self._envelope(self.state.repo(rec["repo"]), actor, action)
        payload["check_run"] = self.check_run_json(rec)
        payload["check_run"]["check_suite"] = self.check_suite_json(
            self.state.by_id("check_suites", rec["check_suite_id"]))
        payload.update(extra)
        self._emit("check_run", payload)

    def _validate_check(self, body: Record, *, creating: bool) -> Record:
        fields: Record = {}
        if creating or "name" in body:
            name = body.get("name")
            if not isinstance(name, str) or not name:
                raise ApiError.validation("CheckRun", "name", "missing_field")
            fields["name"] = name
        for key in ("details_url", "external_id", "started_at", "completed_at"):
            if key in body:
                fields[key] = _text(body[key], key)
        status = body.get("status")
        conclusion = body.get("conclusion")
        if status is not None and status not in CHECK_STATUSES:
            raise ApiError.validation("CheckRun", "status")
        if conclusion is not None:
            if conclusion not in CHECK_CONCLUSIONS:
                raise ApiError.validation("CheckRun", "conclusion")
            status = "completed"
        if status == "completed" and conclusion is None:
            raise ApiError(422, "Invalid request.\n\n\"conclusion\" wasn't supplied.")
        if status is not None:
            fields["status"] = status
            fields["conclusion"] = conclusion
        if "output" in body:
            fields["output"] = self._validate_output(body["output"])
        if "actions" in body:
            fields["actions"] = self._validate_actions(body["actions"])
        return fields

    def _validate_output(self, output: Any) -> Record:
        if not isinstance(output, dict):
            raise ApiError(422, "Invalid request.\n\noutput is not an object.")
        for key in ("title", "summary"):
            if not isinstance(output.get(key), str):
                raise ApiError(422, f"Invalid request.\n\n\"{key}\" wasn't supplied.")
        for key in ("summary", "text"):
            value = output.get(key)
            if value is not None and not isinstance(value, str):
                raise ApiError(422, f"Invalid request.\n\n{key} is not a string.")
            if value is not None and len(value.encode("utf-8")) > SUMMARY_LIMIT:
                # GitHub counts UTF-8 bytes here, not characters.
                raise ApiError.validation("CheckRun", f"output.{key}", "custom",
                                          f"{key} exceeds a maximum bytesize of {SUMMARY_LIMIT}")
        annotations = output.get("annotations") or []
        if not isinstance(annotations, list):
            raise ApiError(422, "Invalid request.\n\nannotations is not an array.")
        if len(annotations) > MAX_ANNOTATIONS:
            raise ApiError(422, "Invalid request.\n\nFor 'properties/annotations', "
                                f"{len(annotations)} items are more than the maximum of {MAX_ANNOTATIONS}.")
        for item in annotations:
            if (not isinstance(item, dict) or not isinstance(item.get("path"), str)
                    or not isinstance(item.get("start_line"), int) or not isinstance(item.get("end_line"), int)
                    or item.get("annotation_level") not in ("notice", "warning", "failure")
                    or not isinstance(item.get("message"), str)):
                raise ApiError.validation("CheckRun", "output.annotations")
        return {"title": output["title"], "summary": output["summary"], "text": output.get("text"),
                "annotations": annotations}

    def _validate_actions(self, actions: Any) -> list[Record]:
        if not isinstance(actions, list) or len(actions) > 3:
            raise ApiError(422, "Invalid request.\n\nactions must be a list of at most 3 items.")
        for item in actions:
            ok = isinstance(item, dict) and all(isinstance(item.get(k), str) and 0 < len(item[k]) <= n
                                                for k, n in (("label", 20), ("description", 40), ("identifier", 20)))
            if not ok:
                raise ApiError.validation("CheckRun", "actions")
        return list(actions)

    async def create_check_run(self, full_name: str, body: Record, *, actor: str) -> Record:
        """Create a check run for the App (emits ``check_run.created`` and, if done, ``completed``)."""
        repo = self.state.repo(full_name)
        fields = self._validate_check(body, creating=True)
        head_sha = body.get("head_sha")
        if not isinstance(head_sha, str) or not await gitrepos.commit_exists(self.repo_git(full_name), head_sha):
            raise ApiError.validation("CheckRun", "head_sha", "custom", f"No commit found for SHA: {head_sha}")
        return self._new_check_run(repo["full_name"], head_sha, fields, actor=actor, app_slug=self.app.slug)

    def _new_check_run(self, full_name: str, head_sha: str, fields: Record, *, actor: str, app_slug: str,
                       branch: str | None = None, before: str | None = None) -> Record:
        suite = self._suite_for(full_name, head_sha, app_slug=app_slug, branch=branch, before=before)
        now = self.state.now()
        output = fields.pop("output", {"title": None, "summary": None, "text": None, "annotations": []})
        rec: Record = {"id": self.state.new_id(), "repo": full_name, "head_sha": head_sha,
                       "check_suite_id": suite["id"],
                       "app_slug": app_slug, "app_id": suite["app_id"], "status": "queued", "conclusion": None,
                       "started_at": now, "completed_at": None, "external_id": "", "details_url": None,
                       "output": {k: output.get(k) for k in ("title", "summary", "text")},
                       "annotations": list(output.get("annotations") or []), "actions": [], "created_at": now,
                       "updated_at": now}
        rec.update(fields)
        if rec["status"] == "completed" and not rec.get("completed_at"):
            rec["completed_at"] = now
        self.state.data["check_runs"][str(rec["id"])] = rec
        suite["updated_at"] = now
        self._check_event(rec, "created", actor)
        if rec["status"] == "completed":
            self._check_event(rec, "completed", actor)
            self._maybe_suite_completed(suite, actor)
        self.changed()
        return self.check_run_json(rec)

    def update_check_run(self, full_name: str, run_id: int, body: Record, *, actor: str) -> Record:
        """PATCH a check run; emit ``check_run.completed`` when it completes."""
        rec = self._check_run(full_name, run_id)
        fields = self._validate_check(body, creating=False)
        was_completed = rec["status"] == "completed"
        if "output" in fields:
            output = fields.pop("output")
            rec["output"] = {k: output.get(k) for k in ("title", "summary", "text")}
            rec["annotations"].extend(output.get("annotations") or [])
        rec.update(fields)
        now = self.state.now()
        rec["updated_at"] = now
        if rec["status"] == "completed" and not was_completed:
            rec["completed_at"] = rec.get("completed_at") or now
            self._check_event(rec, "completed", actor)
            self._maybe_suite_completed(self.state.by_id("check_suites", rec["check_suite_id"]), actor)
        self.changed()
        return self.check_run_json(rec)

    def _check_run(self, full_name: str, run_id: int) -> Record:
        rec = self.state.by_id("check_runs", run_id)
        if rec["repo"].lower() != self.state.repo(full_name)["full_name"].lower():
            raise NotFoundError(f"check run {run_id}")
        return rec

    def get_check_run(self, full_name: str, run_id: int) -> Record:
        """One check run."""
        return self.check_run_json(self._check_run(full_name, run_id))

    def check_run_annotations(self, full_name: str, run_id: int) -> list[Record]:
        """The annotations of a check run."""
        return list(self._check_run(full_name, run_id)["annotations"])

    def request_action(self, full_name: str, run_id: int, identifier: str, *, user: str | None = None) -> None:
        """Click a check run's action button: emit ``check_run.requested_action``."""
        rec = self._check_run(full_name, run_id)
        if identifier not in [a["identifier"] for a in rec.get("actions", [])]:
            raise ApiError(422, f"check run {run_id} has no action {identifier!r}")
        self._check_event(rec, "requested_action", user or self.default_user,
                          requested_action={"identifier": identifier})

    def _maybe_suite_completed(self, suite: Record, actor: str) -> None:
        runs = render.latest_runs([r for r in self.state.data["check_runs"].values()
                                   if r["check_suite_id"] == suite["id"]])
        status, _ = render.suite_status(runs)
        if status != "completed":
            return
        suite["updated_at"] = self.state.now()
        payload = self._envelope(self.state.repo(suite["repo"]), actor, "completed")
        payload["check_suite"] = self.check_suite_json(suite)
        self._emit("check_suite", payload)

    async def resolve_ref(self, full_name: str, ref: str) -> str:
        """A commit SHA for a branch name, tag or SHA (404 if unknown)."""
        path = self.repo_git(full_name)
        for candidate in (f"refs/heads/{ref}", f"refs/tags/{ref}", ref):
            sha = await gitrepos.rev_parse(path, candidate)
            if sha:
                return sha
        raise ApiError(422, f"No commit found for SHA: {ref}")

    async def list_check_runs(self, full_name: str, ref: str, *, check_name: str | None = None,
                              status: str | None = None, latest: bool = True) -> list[Record]:
        """Check runs on a commit, newest first; only the latest per name unless ``latest`` is False."""
        sha = await self.resolve_ref(full_name, ref)
        repo = self.state.repo(full_name)["full_name"]
        runs = sorted((r for r in self.state.data["check_runs"].values() if r["repo"] == repo and r["head_sha"] == sha
                       and (check_name is None or r["name"] == check_name)
                       and (status is None or r["status"] == status)), key=lambda r: r["id"], reverse=True)
        if latest:
            seen: set[tuple[str, int]] = set()
            kept = []
            for r in runs:
                if (r["name"], r["check_suite_id"]) not in seen:
                    seen.add((r["name"], r["check_suite_id"]))
                    kept.append(r)
            runs = kept
        return [self.check_run_json(r) for r in runs]

    async def list_check_suites(self, full_name: str, ref: str) -> list[Record]:
        """Check suites on a commit."""
        sha = await self.resolve_ref(full_name, ref)
        repo = self.state.repo(full_name)["full_name"]
        return [self.check_suite_json(s) for s in self.state.data["check_suites"].values()
                if s["repo"] == repo and s["head_sha"] == sha]

    def create_status(self, full_name: str, sha: str, body: Record, *, actor: str) -> Record:
        """Create a commit status and emit a ``status`` event."""
        state = body.get("state")
        if state not in ("error", "failure", "pending", "success"):
            raise ApiError.validation("Status", "state")
        repo = self.state.repo(full_name)
        now = self.state.now()
        rec = {"id": self.state.new_id(), "repo": repo["full_name"], "sha": sha, "state": state,
               "context": body.get("context") or "default", "description": body.get("description"),
               "target_url": body.get("target_url"), "creator": actor, "created_at": now, "updated_at": now}
        self.state.data["statuses"].append(rec)
        out = self._status_json(rec)
        payload = self._envelope(repo, actor)
        payload.update({"id": rec["id"], "sha": sha, "name": repo["full_name"], "state": state,
                        "context": rec["context"], "description": rec["description"],
                        "target_url": rec["target_url"], "created_at": now, "updated_at": now,
                        "commit": render.commit_stub(self.ctx, repo["full_name"], sha, now), "branches": []})
        self._emit("status", payload)
        self.changed()
        return out

    def _status_json(self, rec: Record) -> Record:
        return {"id": rec["id"], "node_id": render.node_id("SC", rec["id"]), "state": rec["state"],
                "context": rec["context"], "description": rec["description"], "target_url": rec["target_url"],
                "creator": render.user(self.ctx, rec["creator"]), "created_at": rec["created_at"],
                "updated_at": rec["updated_at"]}

    async def combined_status(self, full_name: str, ref: str) -> Record:
        """The combined commit status of a ref."""
        sha = await self.resolve_ref(full_name, ref)
        repo = self.state.repo(full_name)
        latest: dict[str, Record] = {}
        for rec in self.state.data["statuses"]:
            if rec["repo"] == repo["full_name"] and rec["sha"] == sha:
                latest[rec["context"]] = rec
        states = [r["state"] for r in latest.values()]
        if any(s in ("error", "failure") for s in states):
            state = "failure"
        elif not states or "pending" in states:
            state = "pending"
        else:
            state = "success"
        return {"state": state, "sha": sha, "total_count": len(latest),
                "statuses": [self._status_json(r) for r in latest.values()],
                "repository": render.repository(self.ctx, repo),
                "commit_url": f"{self.base_url}/repos/{repo['full_name']}/commits/{sha}",
                "url": f"{self.base_url}/repos/{repo['full_name']}/commits/{sha}/status"}

    # ---- git pushes and CI -------------------------------------------------------
    async def handle_push(self, full_name: str, updates: list[Record], *, pusher: str | None = None) -> None:
        """Record ref updates reported by the post-receive hook: push, synchronize, CI."""
        repo = self.state.repo(full_name)
        actor = pusher or self.app.bot_login
        path = self.repo_git(full_name)
        for update in updates:
            ref, before, after = update.get("ref"), update.get("before"), update.get("after")
            if not all(isinstance(v, str) for v in (ref, before, after)):
                raise ApiError(422, "push updates need ref, before and after")
            assert isinstance(ref, str) and isinstance(before, str) and isinstance(after, str)
            repo["pushed_at"] = self.state.now()
            deleted = after == gitrepos.ZERO_SHA
            commits = [] if deleted else await gitrepos.commits_between(path, before, after)
            for commit in commits:
                tree = await gitrepos.git(path, "rev-parse", f"{commit['id']}^{{tree}}", check=False)
                commit.setdefault("tree_id", tree.stdout.strip())
                commit.setdefault("url", f"{self.base_url}/{repo['full_name']}/commit/{commit['id']}")
            forced = False
            if before != gitrepos.ZERO_SHA and not deleted:
                forced = await gitrepos.merge_base(path, before, after) != before
            payload: Record = {"ref": ref, "before": before, "after": after, "created": before == gitrepos.ZERO_SHA,
                               "deleted": deleted, "forced": forced, "base_ref": None,
                               "compare": f"{self.base_url}/{repo['full_name']}/compare/{before[:12]}...{after[:12]}",
                               "commits": commits, "head_commit": commits[-1] if commits else None,
                               "pusher": {"name": actor, "email": None}}
            payload.update(self._envelope(repo, actor))
            payload["repository"]["owner"]["name"] = repo["owner"]
            self._emit("push", payload)
            if not ref.startswith("refs/heads/"):
                continue
            branch = ref[len("refs/heads/"):]
            for rec in self.state.issues_of(full_name).values():
                pull = rec.get("pull")
                if pull and rec["state"] == "open" and pull["head_ref"] == branch and not deleted:
                    if pull["head_sha"] == after:
                        continue
                    pull["head_sha"] = after
                    rec["updated_at"] = self.state.now()
                    self._issue_event(rec, "synchronize", actor, before=before, after=after)
            if not deleted:
                self.actions.on_push(repo, branch, after, before)
        self.changed()

    # ---- CI primitives (see :mod:`agentz_app.fakehub.ci`) -----------------------------
    def new_suite(self, full_name: str, sha: str, *, app_slug: str, branch: str | None,
                  before: str | None = None) -> Record:
        """A new check suite (GitHub Actions has one per workflow run)."""
        now = self.state.now()
        rec: Record = {"id": self.state.new_id(), "repo": full_name, "head_sha": sha, "head_branch": branch,
                       "app_slug": app_slug, "app_id": self.app.id if app_slug == self.app.slug else ACTIONS_APP_ID,
                       "before": before, "created_at": now, "updated_at": now}
        self.state.data["check_suites"][str(rec["id"])] = rec
        return rec

    def emit_check_run(self, rec: Record, action: str, actor: str) -> None:
        """Emit a ``check_run`` event for ``rec``."""
        self._check_event(rec, action, actor)

    def emit_suite(self, suite: Record, action: str, actor: str) -> None:
        """Emit a ``check_suite`` event for ``suite``."""
        payload = self._envelope(self.state.repo(suite["repo"]), actor, action)
        payload["check_suite"] = self.check_suite_json(suite)
        self._emit("check_suite", payload)

    def suite_maybe_completed(self, suite_id: int, actor: str) -> None:
        """Emit ``check_suite.completed`` when every latest check run of the suite completed."""
        self._maybe_suite_completed(self.state.by_id("check_suites", suite_id), actor)

    def statuses_of(self, full_name: str, sha: str) -> list[Record]:
        """Every commit status of ``sha``, newest first."""
        repo = self.state.repo(full_name)["full_name"]
        return [{**self._status_json(r), "url": f"{self.base_url}/repos/{repo}/statuses/{sha}",
                 "avatar_url": f"{self.base_url}/avatars/{r['creator']}"}
                for r in reversed(self.state.data["statuses"]) if r["repo"] == repo and r["sha"] == sha]


async def run_forever(hub: FakeHub, host: str, port: int) -> None:
    """Start ``hub`` and serve until cancelled, then stop it."""
    await hub.start(host, port)
    try:
        await asyncio.Event().wait()
    finally:
        with contextlib.suppress(Exception):
            await hub.stop()
