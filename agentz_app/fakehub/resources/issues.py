"""Issues (pull requests are issues too): state, title and body, labels and assignees."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agentz_app.fakehub import render
from agentz_app.fakehub.core import HubCore
from agentz_app.fakehub.errors import ApiError, names_list, text_field
from agentz_app.fakehub.state import Record

Change = tuple[str, Record]
"""One event an edit causes: its action and the payload fields it adds."""


class Issues:
    """Issues and the issue side of pull requests, emitting ``issues`` / ``pull_request`` events."""

    def __init__(self, core: HubCore) -> None:
        self.core = core

    def emit_event(self, rec: Record, action: str, actor: str, **extra: Any) -> None:
        """Emit ``issues.<action>`` (``pull_request.<action>`` for a pull request) for ``rec``."""
        core = self.core
        payload = core.envelope(core.state.repo(rec["repo"]), actor, action)
        if rec.get("pull"):
            payload["number"] = rec["number"]
            payload["pull_request"] = render.pull_request(core.ctx, rec)
            event = "pull_request"
        else:
            payload["issue"] = render.issue(core.ctx, rec)
            event = "issues"
        payload.update(extra)
        core.emit(event, payload)

    def create(self, full_name: str, title: str, body: str | None = "", *, user: str | None = None,
               labels: Iterable[str] = (), assignees: Iterable[str] = ()) -> Record:
        """Open an issue as ``user`` (default: the default user) and emit ``issues.opened``."""
        core = self.core
        actor = user or core.default_user
        if not title or not isinstance(title, str):
            raise ApiError.validation("Issue", "title", "missing_field")
        number = core.state.next_number(full_name)
        now = core.state.now()
        repo = core.state.repo(full_name)
        rec: Record = {"id": core.state.new_id(), "number": number, "repo": repo["full_name"], "title": title,
                       "body": body, "state": "open", "state_reason": None, "labels": [], "assignees": [],
                       "user": actor, "created_at": now, "updated_at": now, "closed_at": None,
                       "via_app": actor == core.app.bot_login}
        for name in labels:
            rec["labels"].append(core.state.label(full_name, name)["name"])
        rec["assignees"] = list(dict.fromkeys(assignees))
        core.state.issues_of(full_name)[str(number)] = rec
        self.emit_event(rec, "opened", actor)
        core.changed()
        return render.issue(core.ctx, rec)

    def get(self, full_name: str, number: int) -> Record:
        """The issue (or pull request as an issue)."""
        return render.issue(self.core.ctx, self.core.state.issue(full_name, number))

    def find(self, full_name: str, *, state: str = "open", labels: str | None = None,
             direction: str = "desc", since: str | None = None) -> list[Record]:
        """Issues and pull requests filtered like ``GET /repos/{o}/{r}/issues``."""
        if state not in ("open", "closed", "all"):
            raise ApiError.validation("Issue", "state")
        wanted = [w.strip().lower() for w in labels.split(",") if w.strip()] if labels else []
        records = [r for r in self.core.state.issues_of(full_name).values()
                   if (state == "all" or r["state"] == state)
                   and all(w in [n.lower() for n in r["labels"]] for w in wanted)
                   and (since is None or r["updated_at"] >= since)]
        records.sort(key=lambda r: r["number"], reverse=direction != "asc")
        return [render.issue(self.core.ctx, r) for r in records]

    def update(self, full_name: str, number: int, changes: Record, *, actor: str) -> Record:
        """Apply a PATCH (title, body, state, state_reason, labels, assignees) and emit its events."""
        core = self.core
        rec = core.state.issue(full_name, number)
        title = text_field(changes.get("title"), "title", limit=256)
        body = text_field(changes.get("body"), "body", limit=65536)
        edits: Record = {}
        if "title" in changes and title is not None and title != rec["title"]:
            edits["title"] = {"from": rec["title"]}
            rec["title"] = title
        if "body" in changes and body != rec["body"]:
            edits["body"] = {"from": rec["body"]}
            rec["body"] = body
        events: list[Change] = []
        if edits:
            events.append(("edited", {"changes": edits}))
        if "labels" in changes:
            wanted = [core.state.label(full_name, n)["name"] for n in names_list(changes["labels"], "labels")]
            events += self._set_labels(rec, wanted, full_name)
        if "assignees" in changes:
            events += self._set_assignees(rec, names_list(changes["assignees"], "assignees"))
        if "state" in changes:
            events += self._set_state(rec, changes["state"], changes.get("state_reason"))
        elif "state_reason" in changes and rec["state"] == "closed":
            rec["state_reason"] = changes["state_reason"]
        rec["updated_at"] = core.state.now()
        for action, extra in events:
            self.emit_event(rec, action, actor, **extra)
        core.changed()
        return render.issue(core.ctx, rec)

    def add_labels(self, full_name: str, number: int, names: list[str], *, actor: str) -> list[Record]:
        """Add labels to an issue; return all its labels."""
        rec = self.core.state.issue(full_name, number)
        wanted = list(rec["labels"]) + [self.core.state.label(full_name, n)["name"] for n in names]
        self._apply(rec, self._set_labels(rec, list(dict.fromkeys(wanted)), full_name), actor)
        return [render.label(self.core.ctx, full_name, n) for n in rec["labels"]]

    def set_labels(self, full_name: str, number: int, names: list[str], *, actor: str) -> list[Record]:
        """Replace an issue's labels (``PUT .../labels``); return them."""
        rec = self.core.state.issue(full_name, number)
        wanted = [self.core.state.label(full_name, n)["name"] for n in names]
        self._apply(rec, self._set_labels(rec, list(dict.fromkeys(wanted)), full_name), actor)
        return [render.label(self.core.ctx, full_name, n) for n in rec["labels"]]

    def remove_label(self, full_name: str, number: int, name: str, *, actor: str) -> list[Record]:
        """Remove one label from an issue (404 if absent); return the remaining labels."""
        rec = self.core.state.issue(full_name, number)
        matching = [n for n in rec["labels"] if n.lower() == name.lower()]
        if not matching:
            raise ApiError(404, "Label does not exist")
        wanted = [n for n in rec["labels"] if n not in matching]
        self._apply(rec, self._set_labels(rec, wanted, full_name), actor)
        return [render.label(self.core.ctx, full_name, n) for n in rec["labels"]]

    def change_assignees(self, full_name: str, number: int, logins: list[str], *, add: bool, actor: str) -> Record:
        """Add or remove assignees; return the issue."""
        rec = self.core.state.issue(full_name, number)
        wanted = (list(dict.fromkeys(rec["assignees"] + logins)) if add
                  else [a for a in rec["assignees"] if a not in logins])
        self._apply(rec, self._set_assignees(rec, wanted), actor)
        return render.issue(self.core.ctx, rec)

    def _set_state(self, rec: Record, state: Any, reason: Any) -> list[Change]:
        if state not in ("open", "closed"):
            raise ApiError.validation("Issue", "state")
        if reason not in (None, "completed", "not_planned", "reopened", "duplicate"):
            raise ApiError.validation("Issue", "state_reason")
        if state == rec["state"]:
            return []
        rec["state"] = state
        if state == "closed":
            rec["state_reason"] = reason or "completed"
            rec["closed_at"] = self.core.state.now()
            return [("closed", {})]
        rec["state_reason"] = "reopened"
        rec["closed_at"] = None
        return [("reopened", {})]

    def _set_labels(self, rec: Record, wanted: list[str], full_name: str) -> list[Change]:
        events: list[Change] = []
        for name in list(rec["labels"]):
            if name not in wanted:
                rec["labels"].remove(name)
                events.append(("unlabeled", {"label": render.label(self.core.ctx, full_name, name)}))
        for name in wanted:
            if name not in rec["labels"]:
                rec["labels"].append(name)
                events.append(("labeled", {"label": render.label(self.core.ctx, full_name, name)}))
        return events

    def _set_assignees(self, rec: Record, wanted: list[str]) -> list[Change]:
        events: list[Change] = []
        for login in list(rec["assignees"]):
            if login not in wanted:
                rec["assignees"].remove(login)
                events.append(("unassigned", {"assignee": render.user(self.core.ctx, login)}))
        for login in wanted:
            if login not in rec["assignees"]:
                rec["assignees"].append(login)
                events.append(("assigned", {"assignee": render.user(self.core.ctx, login)}))
        return events

    def _apply(self, rec: Record, events: list[Change], actor: str) -> None:
        if events:
            rec["updated_at"] = self.core.state.now()
        for action, extra in events:
            self.emit_event(rec, action, actor, **extra)
        self.core.changed()
