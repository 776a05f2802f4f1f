"""Commit statuses and the combined status of a ref."""

from __future__ import annotations

from agentz_app.fakehub import render
from agentz_app.fakehub.core import HubCore
from agentz_app.fakehub.errors import ApiError
from agentz_app.fakehub.resources.repos import Repos
from agentz_app.fakehub.state import Record

STATES = ("error", "failure", "pending", "success")


class Statuses:
    """Commit statuses, emitting ``status`` events."""

    def __init__(self, core: HubCore, repos: Repos) -> None:
        self.core = core
        self.repos = repos

    def create(self, full_name: str, sha: str, body: Record, *, actor: str) -> Record:
        """Create a commit status and emit a ``status`` event."""
        core = self.core
        state = body.get("state")
        if state not in STATES:
            raise ApiError.validation("Status", "state")
        repo = core.state.repo(full_name)
        now = core.state.now()
        rec = {"id": core.state.new_id(), "repo": repo["full_name"], "sha": sha, "state": state,
               "context": body.get("context") or "default", "description": body.get("description"),
               "target_url": body.get("target_url"), "creator": actor, "created_at": now, "updated_at": now}
        core.state.data["statuses"].append(rec)
        out = self._json(rec)
        payload = core.envelope(repo, actor)
        payload.update({"id": rec["id"], "sha": sha, "name": repo["full_name"], "state": state,
                        "context": rec["context"], "description": rec["description"],
                        "target_url": rec["target_url"], "created_at": now, "updated_at": now,
                        "commit": render.commit_stub(core.ctx, repo["full_name"], sha, now), "branches": []})
        core.emit("status", payload)
        core.changed()
        return out

    async def combined(self, full_name: str, ref: str) -> Record:
        """The combined commit status of a ref."""
        core = self.core
        sha = await self.repos.resolve_ref(full_name, ref)
        repo = core.state.repo(full_name)
        latest: dict[str, Record] = {}
        for rec in core.state.data["statuses"]:
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
                "statuses": [self._json(r) for r in latest.values()],
                "repository": render.repository(core.ctx, repo),
                "commit_url": f"{core.base_url}/repos/{repo['full_name']}/commits/{sha}",
                "url": f"{core.base_url}/repos/{repo['full_name']}/commits/{sha}/status"}

    def find(self, full_name: str, sha: str) -> list[Record]:
        """Every commit status of ``sha``, newest first."""
        core = self.core
        repo = core.state.repo(full_name)["full_name"]
        return [{**self._json(r), "url": f"{core.base_url}/repos/{repo}/statuses/{sha}",
                 "avatar_url": f"{core.base_url}/avatars/{r['creator']}"}
                for r in reversed(core.state.data["statuses"]) if r["repo"] == repo and r["sha"] == sha]

    def _json(self, rec: Record) -> Record:
        return {"id": rec["id"], "node_id": render.node_id("SC", rec["id"]), "state": rec["state"],
                "context": rec["context"], "description": rec["description"], "target_url": rec["target_url"],
                "creator": render.user(self.core.ctx, rec["creator"]), "created_at": rec["created_at"],
                "updated_at": rec["updated_at"]}
