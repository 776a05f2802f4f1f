"""Issue comments and reactions (on issues and on comments)."""

from __future__ import annotations

from typing import Any

from agentz_app.fakehub import render
from agentz_app.fakehub.core import HubCore
from agentz_app.fakehub.errors import ApiError
from agentz_app.fakehub.state import NotFoundError, Record

BODY_LIMIT = 65536
REACTIONS = ("+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes")
_BODY_TOO_LONG = "Body is too long (maximum is 65536 characters)"


def _checked_body(body: Any) -> str:
    if not isinstance(body, str) or not body:
        raise ApiError.validation("IssueComment", "body", "missing_field")
    if len(body) > BODY_LIMIT:
        raise ApiError.validation("IssueComment", "body", "custom", _BODY_TOO_LONG)
    return body


class Comments:
    """Comments on issues and pull requests, emitting ``issue_comment`` events."""

    def __init__(self, core: HubCore) -> None:
        self.core = core

    def _emit(self, rec: Record, action: str, actor: str, **extra: Any) -> None:
        core = self.core
        issue = core.state.issue(rec["repo"], rec["issue_number"])
        payload = core.envelope(core.state.repo(rec["repo"]), actor, action)
        payload["issue"] = render.issue(core.ctx, issue)
        payload["comment"] = render.comment(core.ctx, rec)
        payload.update(extra)
        core.emit("issue_comment", payload)

    def create(self, full_name: str, number: int, body: str, *, user: str | None = None) -> Record:
        """Comment on an issue or pull request and emit ``issue_comment.created``."""
        core = self.core
        actor = user or core.default_user
        issue = core.state.issue(full_name, number)
        _checked_body(body)
        now = core.state.now()
        rec = {"id": core.state.new_id(), "repo": issue["repo"], "issue_number": number, "body": body,
               "user": actor, "created_at": now, "updated_at": now, "via_app": actor == core.app.bot_login}
        core.state.data["comments"][str(rec["id"])] = rec
        issue["updated_at"] = now
        self._emit(rec, "created", actor)
        core.changed()
        return render.comment(core.ctx, rec)

    def find(self, full_name: str, number: int, *, since: str | None = None) -> list[Record]:
        """Comments of an issue, oldest first."""
        issue = self.core.state.issue(full_name, number)
        recs = [c for c in self.core.state.data["comments"].values()
                if c["repo"] == issue["repo"] and c["issue_number"] == number
                and (since is None or c["updated_at"] >= since)]
        return [render.comment(self.core.ctx, c) for c in sorted(recs, key=lambda c: c["id"])]

    def record(self, full_name: str, comment_id: int) -> Record:
        """The stored comment ``comment_id`` of the repository (404 when it belongs to another)."""
        rec = self.core.state.by_id("comments", comment_id)
        if rec["repo"].lower() != self.core.state.repo(full_name)["full_name"].lower():
            raise NotFoundError(f"comment {comment_id}")
        return rec

    def get(self, full_name: str, comment_id: int) -> Record:
        """One issue comment."""
        return render.comment(self.core.ctx, self.record(full_name, comment_id))

    def edit(self, full_name: str, comment_id: int, body: Any, *, actor: str) -> Record:
        """Edit a comment's body and emit ``issue_comment.edited``."""
        rec = self.record(full_name, comment_id)
        _checked_body(body)
        old = rec["body"]
        rec["body"] = body
        rec["updated_at"] = self.core.state.now()
        if old != body:
            self._emit(rec, "edited", actor, changes={"body": {"from": old}})
        self.core.changed()
        return render.comment(self.core.ctx, rec)

    def delete(self, full_name: str, comment_id: int, *, actor: str) -> None:
        """Delete a comment and emit ``issue_comment.deleted``."""
        rec = self.record(full_name, comment_id)
        self._emit(rec, "deleted", actor)
        del self.core.state.data["comments"][str(comment_id)]
        self.core.changed()


class Reactions:
    """Reactions on issues and comments; one per user, content and target."""

    def __init__(self, core: HubCore, comments: Comments) -> None:
        self.core = core
        self.comments = comments

    def add(self, full_name: str, content: Any, *, actor: str, issue_number: int | None = None,
            comment_id: int | None = None) -> tuple[Record, bool]:
        """React to an issue or comment; return (reaction, created)."""
        state = self.core.state
        if content not in REACTIONS:
            raise ApiError.validation("Reaction", "content")
        if issue_number is not None:
            state.issue(full_name, issue_number)
        if comment_id is not None:
            self.comments.record(full_name, comment_id)
        for rec in state.data["reactions"].values():
            if (rec["user"], rec["content"], rec.get("issue_number"), rec.get("comment_id"), rec["repo"]) == (
                    actor, content, issue_number, comment_id, full_name):
                return self._json(rec), False
        rec = {"id": state.new_id(), "repo": full_name, "issue_number": issue_number, "comment_id": comment_id,
               "content": content, "user": actor, "created_at": state.now()}
        state.data["reactions"][str(rec["id"])] = rec
        self.core.changed()
        return self._json(rec), True

    def _json(self, rec: Record) -> Record:
        return {"id": rec["id"], "node_id": render.node_id("REA", rec["id"]), "content": rec["content"],
                "user": render.user(self.core.ctx, rec["user"]), "created_at": rec["created_at"]}
