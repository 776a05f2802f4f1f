"""Repository functions for the snapshot tables: installations, repositories, issues,
pull requests, comments and CI results.

Webhook routers and the periodic resync both write through these functions, in the
caller's transaction. Each upsert returns True when a stored value changed. An older
payload never overwrites newer state: GitHub's ISO ``updated_at`` strings are compared
(equal timestamps apply, so a label change within the same second still lands).
Rows are locked (``FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already
serialises writers) and created with ``INSERT … ON CONFLICT DO NOTHING``, so concurrent
processes converge instead of failing on the unique keys.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from agentz_app.domain.dependencies import closing_references
from agentz_app.store.models import (
    CheckResult,
    Installation,
    IssueComment,
    IssueSnapshot,
    PullSnapshot,
    Repository,
    RepositoryCI,
    now,
)

_ASSOCIATION = re.compile(r"[A-Z_]{1,32}")

_Model = TypeVar("_Model", IssueSnapshot, PullSnapshot, IssueComment, CheckResult, Installation, Repository,
                 RepositoryCI)


# Pure helpers -----------------------------------------------------------------------


def linked_issues(body: str | None, repo: str) -> list[int]:
    """Issue numbers of ``repo`` that a PR's body closes with GitHub's keywords (not mentions)."""
    return sorted({ref.number for ref in closing_references(body or "", repo) if ref.repo == repo})


def _names(items: object, key: str) -> list[str]:
    """Names in GitHub's order, without repeats."""
    if not isinstance(items, list):
        return []
    names = [str(item[key]) for item in items if isinstance(item, Mapping) and item.get(key)]
    return list(dict.fromkeys(names))


def _login(user: object) -> str:
    return str(user.get("login") or "") if isinstance(user, Mapping) else ""


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _association(obj: Mapping[str, object]) -> str | None:
    """GitHub's ``author_association`` (OWNER, MEMBER, … NONE), or None when absent or malformed."""
    value = obj.get("author_association")
    return value if isinstance(value, str) and _ASSOCIATION.fullmatch(value) else None


def _assign(row: object, values: Mapping[str, object]) -> bool:
    changed = False
    for name, value in values.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    return changed


def _is_older(incoming: str, stored: str) -> bool:
    return bool(incoming and stored and incoming < stored)


# Row access -------------------------------------------------------------------------


def _locked(
    session: Session, model: type[_Model], keys: Mapping[str, Any], initial: Mapping[str, Any] | None = None
) -> tuple[_Model, bool]:
    """The row with unique ``keys``, locked for update; created from ``keys`` and ``initial``
    when missing. Returns (row, created)."""
    query = select(model).filter_by(**keys).with_for_update()
    row = session.scalars(query).first()
    if row is not None:
        return row, False
    dialect_insert = sqlite.insert if session.get_bind().dialect.name == "sqlite" else postgresql.insert
    values = {**(initial or {}), **keys}
    result = session.execute(dialect_insert(model).values(**values).on_conflict_do_nothing())
    created = bool(getattr(result, "rowcount", 0))
    return session.scalars(query.execution_options(populate_existing=True)).one(), created


# Installations and repositories -----------------------------------------------------


def upsert_installation(
    session: Session, installation: Mapping[str, Any], *, suspended: bool | None = None, deleted: bool = False
) -> bool:
    """Record an installation from its payload object; returns True if anything changed."""
    row, created = _locked(
        session, Installation, {"id": int(installation["id"])}, {"account": _login(installation.get("account"))}
    )
    values: dict[str, Any] = {"account": _login(installation.get("account")) or row.account, "deleted": deleted}
    if suspended is None:
        suspended = installation.get("suspended_at") is not None
    values["suspended"] = suspended
    changed = _assign(row, values)
    if changed:
        row.updated_at = now()
    return changed or created


def upsert_repository(
    session: Session, repository: Mapping[str, Any], *, installation_id: int | None = None, active: bool = True
) -> bool:
    """Record a repository from a payload object (full or the short installation form)."""
    repo_id = int(repository["id"])
    full_name = str(repository["full_name"])
    # A repository deleted and re-created (or renamed over) frees its old full name.
    session.execute(delete(Repository).where(Repository.full_name == full_name, Repository.id != repo_id))
    row, created = _locked(session, Repository, {"id": repo_id}, {"full_name": full_name})
    values: dict[str, Any] = {"full_name": full_name, "active": active}
    if installation_id is not None:
        values["installation_id"] = installation_id
    if isinstance(repository.get("default_branch"), str) and repository["default_branch"]:
        values["default_branch"] = repository["default_branch"]
    if isinstance(repository.get("private"), bool):
        values["private"] = repository["private"]
    changed = _assign(row, values)
    if changed:
        row.updated_at = now()
    return changed or created


def set_repositories_active(session: Session, repo_ids: Iterable[int], *, active: bool) -> int:
    """Mark repositories (by GitHub id) active or inactive; returns how many rows changed."""
    ids = [int(repo_id) for repo_id in repo_ids]
    if not ids:
        return 0
    result = session.execute(
        update(Repository)
        .where(Repository.id.in_(ids), Repository.active != active)
        .values(active=active, updated_at=now())
    )
    return int(getattr(result, "rowcount", 0) or 0)


def set_installation_state(session: Session, installation_id: int, *, suspended: bool, deleted: bool) -> list[str]:
    """Record suspension/removal; repositories follow (inactive unless the App is usable).

    Returns the full names of the installation's repositories.
    """
    row = session.get(Installation, installation_id, with_for_update=True)
    if row is not None and (row.suspended, row.deleted) != (suspended, deleted):
        row.suspended, row.deleted, row.updated_at = suspended, deleted, now()
    active = not (suspended or deleted)
    session.execute(
        update(Repository)
        .where(Repository.installation_id == installation_id, Repository.active != active)
        .values(active=active, updated_at=now())
    )
    return list(session.scalars(select(Repository.full_name).where(Repository.installation_id == installation_id)))


# Issues and pull requests -----------------------------------------------------------


def upsert_issue(session: Session, repo: str, issue: Mapping[str, Any]) -> bool:
    """Store an issue (or a PR seen as an issue) unless the stored copy is newer."""
    row, created = _locked(session, IssueSnapshot, {"repo": repo, "number": int(issue["number"])})
    updated_at = _text(issue.get("updated_at"))
    if not created and _is_older(updated_at, row.updated_at):
        return False
    changed = _assign(
        row,
        {
            "title": _text(issue.get("title")),
            "body": _text(issue.get("body")),
            "state": _text(issue.get("state")) or "open",
            "state_reason": issue.get("state_reason") if isinstance(issue.get("state_reason"), str) else None,
            "labels": _names(issue.get("labels"), "name"),
            "assignees": _names(issue.get("assignees"), "login"),
            "author": _login(issue.get("user")),
            "author_association": _association(issue),
            "is_pull_request": "pull_request" in issue,
            "updated_at": updated_at or row.updated_at,
        },
    )
    row.synced_at = now()
    return changed or created


def delete_issue(session: Session, repo: str, number: int) -> bool:
    """Forget an issue that was deleted or transferred away."""
    result = session.execute(delete(IssueSnapshot).where(IssueSnapshot.repo == repo, IssueSnapshot.number == number))
    return bool(getattr(result, "rowcount", 0))


def upsert_pull(session: Session, repo: str, pull: Mapping[str, Any]) -> bool:
    """Store a pull request unless the stored copy is newer (head SHA follows ``updated_at``)."""
    row, created = _locked(session, PullSnapshot, {"repo": repo, "number": int(pull["number"])})
    updated_at = _text(pull.get("updated_at"))
    if not created and _is_older(updated_at, row.updated_at):
        return False
    head: Mapping[str, Any] = pull["head"] if isinstance(pull.get("head"), Mapping) else {}
    base: Mapping[str, Any] = pull["base"] if isinstance(pull.get("base"), Mapping) else {}
    merged = pull["merged"] if isinstance(pull.get("merged"), bool) else pull.get("merged_at") is not None
    title, body = _text(pull.get("title")), _text(pull.get("body"))
    changed = _assign(
        row,
        {
            "title": title,
            "body": body,
            "state": _text(pull.get("state")) or "open",
            "merged": merged,
            "draft": bool(pull.get("draft")),
            "author": _login(pull.get("user")),
            "head_ref": _text(head.get("ref")),
            "head_sha": _text(head.get("sha")),
            "base_ref": _text(base.get("ref")),
            "linked_issues": linked_issues(body, repo),
            "updated_at": updated_at or row.updated_at,
        },
    )
    row.synced_at = now()
    return changed or created


def record_review_state(session: Session, repo: str, number: int, state: str) -> bool:
    """Remember the latest review verdict on a pull request (approved, changes_requested …)."""
    row, _ = _locked(session, PullSnapshot, {"repo": repo, "number": number})
    return _assign(row, {"review_state": state.lower()})


# Comments ---------------------------------------------------------------------------


def upsert_comment(
    session: Session,
    repo: str,
    issue_number: int,
    comment: Mapping[str, Any],
    *,
    kind: str = "issue",
    from_app: bool = False,
) -> bool:
    """Store an issue comment, review or review comment unless the stored copy is newer."""
    row, created = _locked(
        session, IssueComment, {"id": int(comment["id"])}, {"repo": repo, "issue_number": issue_number}
    )
    updated_at = _text(comment.get("updated_at")) or _text(comment.get("submitted_at"))
    if not created and _is_older(updated_at, row.updated_at):
        return False
    changed = _assign(
        row,
        {
            "repo": repo,
            "issue_number": issue_number,
            "author": _login(comment.get("user")),
            "author_association": _association(comment),
            "body": _text(comment.get("body")),
            "from_app": from_app,
            "kind": kind,
            "updated_at": updated_at or row.updated_at,
        },
    )
    return changed or created


def delete_comment(session: Session, comment_id: int) -> bool:
    """Forget a deleted comment; True if it was known."""
    result = session.execute(delete(IssueComment).where(IssueComment.id == comment_id))
    return bool(getattr(result, "rowcount", 0))


