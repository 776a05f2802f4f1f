"""The fake GitHub's in-memory model: plain JSON-able records, saved atomically to a file.

Records keep internal field names (``user`` is a login, ``labels`` a list of names);
:mod:`agentz_app.fakehub.render` turns them into GitHub-shaped JSON.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

Record = dict[str, Any]

_EMPTY: dict[str, Any] = {
    "next_id": 1000,
    "clock": 0.0,
    "repos": {},
    "installations": {},
    "tokens": {},
    "users": {},
    "permissions": {},
    "labels": {},
    "issues": {},
    "comments": {},
    "review_comments": {},
    "reviews": {},
    "reactions": {},
    "check_suites": {},
    "check_runs": {},
    "statuses": [],
    "deliveries": {},
    "manifest_codes": {},
}


def iso(epoch: float) -> str:
    """Format epoch seconds as GitHub does: ``2024-01-02T03:04:05Z``."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class NotFoundError(LookupError):
    """A record addressed by the request does not exist."""


class HubState:
    """All fake GitHub data, addressable by repository full name and number or id."""

    def __init__(self, data: dict[str, Any] | None = None, *, path: Path | None = None) -> None:
        self.data: dict[str, Any] = json.loads(json.dumps(_EMPTY))
        if data:
            self.data.update(data)
        self.path = path

    # ---- persistence -------------------------------------------------------------
    @classmethod
    def load(cls, path: Path) -> HubState:
        """Load the state saved at ``path``, or an empty state bound to it."""
        if path.exists():
            return cls(json.loads(path.read_text("utf-8")), path=path)
        return cls(path=path)

    def save(self) -> None:
        """Write the state atomically (temp file + rename) when bound to a file."""
        if self.path is None:
            return
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(json.dumps(self.data, sort_keys=True), "utf-8")
        os.replace(tmp, self.path)

    # ---- ids and clock -----------------------------------------------------------
    def new_id(self) -> int:
        """A fresh id, unique across every kind of record."""
        value = int(self.data["next_id"])
        self.data["next_id"] = value + 1
        return value

    def now(self) -> str:
        """An ISO timestamp strictly later than every earlier one (1 s resolution, like GitHub)."""
        current = float(int(time.time()))
        last = float(self.data["clock"])
        if current <= last:
            current = last + 1
        self.data["clock"] = current
        return iso(current)

    # ---- lookups -----------------------------------------------------------------
    def repo(self, full_name: str) -> Record:
        """The repository record, matched case-insensitively like GitHub."""
        repos: dict[str, Record] = self.data["repos"]
        if full_name in repos:
            return repos[full_name]
        lowered = full_name.lower()
        for name, record in repos.items():
            if name.lower() == lowered:
                return record
        raise NotFoundError(f"repository {full_name}")

    def repo_by_id(self, repo_id: int) -> Record:
        """The repository record with ``repo_id``."""
        for record in self.data["repos"].values():
            if record["id"] == repo_id:
                return dict(record)
        raise NotFoundError(f"repository id {repo_id}")

    def issues_of(self, full_name: str) -> dict[str, Record]:
        """Issues and pull requests of a repository keyed by number (as text)."""
        issues: dict[str, Record] = self.data["issues"].setdefault(self.repo(full_name)["full_name"], {})
        return issues

    def issue(self, full_name: str, number: int) -> Record:
        """The issue or pull request ``number``."""
        record = self.issues_of(full_name).get(str(number))
        if record is None:
            raise NotFoundError(f"issue {full_name}#{number}")
        return record

    def pull(self, full_name: str, number: int) -> Record:
        """The pull request ``number`` (404 for a plain issue, like GitHub)."""
        record = self.issue(full_name, number)
        if not record.get("pull"):
            raise NotFoundError(f"pull request {full_name}#{number}")
        return record

    def by_id(self, table: str, record_id: int) -> Record:
        """A record from an id-keyed table such as ``comments`` or ``check_runs``."""
        record = self.data[table].get(str(record_id))
        if record is None:
            raise NotFoundError(f"{table} {record_id}")
        result: Record = record
        return result

    def next_number(self, full_name: str) -> int:
        """The next issue/pull request number of a repository (they share one sequence)."""
        repo = self.repo(full_name)
        number = int(repo.get("next_number", 1))
        repo["next_number"] = number + 1
        return number

    # ---- users and permissions ---------------------------------------------------
    def user(self, login: str, *, kind: str = "User") -> Record:
        """The user record for ``login``, created on first use."""
        users: dict[str, Record] = self.data["users"]
        if login not in users:
            users[login] = {"login": login, "id": self.new_id(), "type": kind}
        return users[login]

    def permission(self, full_name: str, login: str) -> str:
        """The role of ``login`` on a repository: admin, maintain, write, triage, read or none."""
        repo = self.repo(full_name)
        if login == repo["owner"]:
            return "admin"
        perms: dict[str, str] = self.data["permissions"].get(repo["full_name"], {})
        if login in perms:
            return perms[login]
        return "none" if repo.get("private") else "read"

    def set_permission(self, full_name: str, login: str, role: str) -> None:
        """Set the role of ``login`` on a repository."""
        if role not in ("admin", "maintain", "write", "triage", "read", "none"):
            raise ValueError(f"unknown permission {role!r}")
        repo = self.repo(full_name)
        self.user(login)
        self.data["permissions"].setdefault(repo["full_name"], {})[login] = role

    def label(self, full_name: str, name: str) -> Record:
        """The repository label ``name``, created on first use."""
        labels: dict[str, Record] = self.data["labels"].setdefault(self.repo(full_name)["full_name"], {})
        for existing_name, record in labels.items():
            if existing_name.lower() == name.lower():
                return record
        labels[name] = {"id": self.new_id(), "name": name, "color": "ededed", "description": None}
        return labels[name]

    # ---- installations -----------------------------------------------------------
    def installation_for_owner(self, owner: str) -> Record:
        """The App's installation on the account ``owner``, created on first use."""
        installations: dict[str, Record] = self.data["installations"]
        for record in installations.values():
            if record["account"] == owner:
                return record
        record = {"id": self.new_id(), "account": owner, "created_at": self.now()}
        installations[str(record["id"])] = record
        return record

    def installation(self, installation_id: int) -> Record:
        """The installation with ``installation_id``."""
        record = self.data["installations"].get(str(installation_id))
        if record is None:
            raise NotFoundError(f"installation {installation_id}")
        result: Record = record
        return result

    def repos_of_installation(self, installation_id: int) -> list[Record]:
        """Repositories the installation can reach."""
        return [r for r in self.data["repos"].values() if r["installation_id"] == installation_id]
