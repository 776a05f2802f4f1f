"""Repositories: bare git repositories, their CI set-up, refs and collaborators."""

from __future__ import annotations

import re

from agentz_app.fakehub import gitrepos, render
from agentz_app.fakehub.ci import DEFAULT_CI_COMMAND, Workflow, workflow_record
from agentz_app.fakehub.core import HubCore
from agentz_app.fakehub.errors import ApiError
from agentz_app.fakehub.state import Record

_LEGACY_ROLES = {"admin": "admin", "maintain": "write", "write": "write", "triage": "read", "read": "read"}
_ROLE_ORDER = ["read", "triage", "write", "maintain", "admin"]


class Repos:
    """Repositories backed by real bare git repositories, and who may do what in them."""

    def __init__(self, core: HubCore) -> None:
        self.core = core

    async def create(self, full_name: str, files: dict[str, str] | None = None, *,
                     ci_command: str | None = DEFAULT_CI_COMMAND, default_branch: str = "main",
                     private: bool = False, description: str | None = None) -> Record:
        """Create a repository backed by a bare git repo holding ``files`` on ``default_branch``."""
        core = self.core
        owner, sep, name = full_name.partition("/")
        if not sep or not re.fullmatch(r"[A-Za-z0-9_.-]+", owner) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ApiError(422, f"Invalid repository name {full_name!r}")
        if full_name in core.state.data["repos"]:
            raise ApiError.validation("Repository", "name", "custom", "name already exists on this account")
        path = gitrepos.repo_path(core.root, full_name)
        await gitrepos.create_bare_repo(path, files or {}, default_branch=default_branch)
        if core.base_url:
            gitrepos.write_hook(path, notify_url=core.push_url, full_name=full_name)
        now = core.state.now()
        installation = core.state.installation_for_owner(owner)
        core.state.user(owner)
        repo = {"id": core.state.new_id(), "name": name, "full_name": full_name, "owner": owner,
                "private": private, "description": description, "default_branch": default_branch,
                "clone_url": core.git_url_template.format(full_name=full_name), "created_at": now,
                "updated_at": now, "pushed_at": now, "installation_id": installation["id"],
                "ci_command": ci_command, "next_number": 1}
        core.state.data["repos"][full_name] = repo
        core.changed()
        return render.repository(core.ctx, repo)

    def set_ci_command(self, full_name: str, command: str | None) -> None:
        """Change (or disable with None) a repository's CI command."""
        self.core.state.repo(full_name)["ci_command"] = command
        self.core.changed()

    def set_workflows(self, full_name: str, workflows: list[Workflow] | None) -> None:
        """Give a repository GitHub Actions workflows (None: one ``CI`` workflow running its CI command)."""
        self.core.state.repo(full_name)["workflows"] = None if workflows is None else [workflow_record(w)
                                                                                       for w in workflows]
        self.core.changed()

    async def resolve_ref(self, full_name: str, ref: str) -> str:
        """A commit SHA for a branch name, tag or SHA (422 if unknown)."""
        path = self.core.repo_git(full_name)
        for candidate in (f"refs/heads/{ref}", f"refs/tags/{ref}", ref):
            sha = await gitrepos.rev_parse(path, candidate)
            if sha:
                return sha
        raise ApiError(422, f"No commit found for SHA: {ref}")

    # ---- users and collaborators -------------------------------------------------
    def add_user(self, login: str) -> None:
        """Make ``login`` a GitHub user (one who has not acted yet)."""
        self.core.state.user(login)
        self.core.changed()

    def set_permission(self, full_name: str, login: str, role: str) -> None:
        """Give ``login`` a role on a repository (admin, maintain, write, triage, read, none)."""
        try:
            self.core.state.set_permission(full_name, login, role)
        except ValueError as exc:
            raise ApiError(422, str(exc)) from exc
        self.core.changed()

    def permission_json(self, full_name: str, login: str) -> Record:
        """The collaborator permission answer for ``login``, as GitHub gives it.

        Anyone GitHub knows gets an answer (``read`` on a public repository when not a
        collaborator, ``none`` on a private one); a login that is no user, such as an App's
        ``name[bot]``, is a 404.
        """
        state = self.core.state
        known = {name.lower() for name in state.data["users"]}
        if login.lower().endswith("[bot]") or login.lower() not in known:
            raise ApiError(404, "Not Found")
        role = state.permission(full_name, login)
        rank = _ROLE_ORDER.index(role) if role in _ROLE_ORDER else -1
        user = render.user(self.core.ctx, login)
        user["permissions"] = {"pull": rank >= 0, "triage": rank >= 1, "push": rank >= 2, "maintain": rank >= 3,
                               "admin": rank >= 4}
        user["role_name"] = role
        return {"permission": _LEGACY_ROLES.get(role, "none"), "role_name": role, "user": user}

    def collaborators(self, full_name: str) -> set[str]:
        """Lower-cased logins holding any role on the repository, the owner included."""
        repo = self.core.state.repo(full_name)
        roles: dict[str, str] = self.core.state.data["permissions"].get(repo["full_name"], {})
        return {login.lower() for login, role in roles.items() if role != "none"} | {repo["owner"].lower()}
