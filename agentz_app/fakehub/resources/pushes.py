"""Pushes to the bare repositories: ``push`` events, pull request synchronisation and CI starts."""

from __future__ import annotations

import asyncio

from agentz_app.fakehub import gitrepos
from agentz_app.fakehub.core import HubCore
from agentz_app.fakehub.errors import ApiError
from agentz_app.fakehub.resources.actions import ActionsSimulator
from agentz_app.fakehub.resources.issues import Issues
from agentz_app.fakehub.state import Record


class Pushes:
    """Ref updates reported by the post-receive hook (or made by a merge) and what follows them."""

    def __init__(self, core: HubCore, issues: Issues, actions: ActionsSimulator) -> None:
        self.core = core
        self.issues = issues
        self.actions = actions
        self.lock = asyncio.Lock()
        """Held while the fake itself moves a branch (a merge), so ref reads and writes do not interleave."""

    async def record(self, full_name: str, updates: list[Record], *, pusher: str | None = None) -> None:
        """Record ref updates reported by the post-receive hook: push, synchronize, CI."""
        core = self.core
        repo = core.state.repo(full_name)
        actor = pusher or core.app.bot_login
        path = core.repo_git(full_name)
        for update in updates:
            ref, before, after = update.get("ref"), update.get("before"), update.get("after")
            if not isinstance(ref, str) or not isinstance(before, str) or not isinstance(after, str):
                raise ApiError(422, "push updates need ref, before and after")
            repo["pushed_at"] = core.state.now()
            deleted = after == gitrepos.ZERO_SHA
            commits = [] if deleted else await gitrepos.commits_between(path, before, after)
            for commit in commits:
                tree = await gitrepos.git(path, "rev-parse", f"{commit['id']}^{{tree}}", check=False)
                commit.setdefault("tree_id", tree.stdout.strip())
                commit.setdefault("url", f"{core.base_url}/{repo['full_name']}/commit/{commit['id']}")
            forced = False
            if before != gitrepos.ZERO_SHA and not deleted:
                forced = await gitrepos.merge_base(path, before, after) != before
            payload: Record = {"ref": ref, "before": before, "after": after, "created": before == gitrepos.ZERO_SHA,
                               "deleted": deleted, "forced": forced, "base_ref": None,
                               "compare": f"{core.base_url}/{repo['full_name']}/compare/{before[:12]}...{after[:12]}",
                               "commits": commits, "head_commit": commits[-1] if commits else None,
                               "pusher": {"name": actor, "email": None}}
            payload.update(core.envelope(repo, actor))
            payload["repository"]["owner"]["name"] = repo["owner"]
            core.emit("push", payload)
            if not ref.startswith("refs/heads/"):
                continue
            branch = ref[len("refs/heads/"):]
            self._synchronize(full_name, branch, before, after, actor, deleted=deleted)
            if not deleted:
                self.actions.on_push(repo, branch, after, before)
        core.changed()

    def _synchronize(self, full_name: str, branch: str, before: str, after: str, actor: str, *,
                     deleted: bool) -> None:
        """Move the head of every open pull request from ``branch`` and emit ``synchronize``."""
        for rec in self.core.state.issues_of(full_name).values():
            pull = rec.get("pull")
            if pull and rec["state"] == "open" and pull["head_ref"] == branch and not deleted:
                if pull["head_sha"] == after:
                    continue
                pull["head_sha"] = after
                rec["updated_at"] = self.core.state.now()
                self.issues.emit_event(rec, "synchronize", actor, before=before, after=after)
