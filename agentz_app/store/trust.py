"""Durable facts behind the permission rule: permission answers, handled commands,
throttled refusals, who added scheduling labels, and notes on a run's status comment.

Each claim is one ``INSERT … ON CONFLICT DO NOTHING`` (or a locked row), so two
processes handling the same delivery agree on which one acts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from agentz_app.store.db import Database
from agentz_app.store.models import ActorPermission, CommandExecution, LabelActor, RefusalReply, Run

MAX_RUN_NOTES = 5


def _insert(session: Session, model: Any) -> Any:
    dialect_insert = sqlite.insert if session.get_bind().dialect.name == "sqlite" else postgresql.insert
    return dialect_insert(model)


# Permission answers -----------------------------------------------------------------


def stored_permission(session: Session, repo: str, login: str) -> ActorPermission | None:
    """GitHub's last permission answer for ``login`` on ``repo``, if any."""
    return session.get(ActorPermission, (repo, login.lower()))


def stored_permissions(session: Session, repo: str, logins: Iterable[str]) -> dict[str, ActorPermission]:
    """Stored answers for several logins of one repository, keyed by lower-case login."""
    wanted = sorted({login.lower() for login in logins if login})
    if not wanted:
        return {}
    rows = session.scalars(
        select(ActorPermission).where(ActorPermission.repo == repo, ActorPermission.login.in_(wanted))
    )
    return {row.login: row for row in rows}


def save_permission(db: Database, repo: str, login: str, *, permission: str | None, role_name: str | None,
                    at: float) -> None:
    """Remember GitHub's permission answer for ``login`` on ``repo``."""
    values = {"permission": permission, "role_name": role_name, "checked_at": at}
    with db.begin() as session:
        session.execute(
            _insert(session, ActorPermission)
            .values(repo=repo, login=login.lower(), **values)
            .on_conflict_do_update(index_elements=["repo", "login"], set_=values)
        )


# Commands -----------------------------------------------------------------------------


def claim_command_in(session: Session, *, comment_id: int, command_hash: str, repo: str, issue_number: int,
                     login: str, at: float) -> bool:
    """:func:`claim_command` inside the caller's transaction."""
    inserted = session.connection().execute(
        _insert(session, CommandExecution)
        .values(comment_id=comment_id, command_hash=command_hash, repo=repo, issue_number=issue_number,
                login=login, created_at=at)
        .on_conflict_do_nothing()
        .returning(CommandExecution.comment_id)
    )
    return inserted.first() is not None


def claim_command(db: Database, *, comment_id: int, command_hash: str, repo: str, issue_number: int, login: str,
                  at: float) -> bool:
    """Record that a comment's command is being handled; False when it already was."""
    with db.begin() as session:
        return claim_command_in(session, comment_id=comment_id, command_hash=command_hash, repo=repo,
                                issue_number=issue_number, login=login, at=at)


def command_claimed(db: Database, *, comment_id: int, command_hash: str) -> bool:
    """True when a comment's command was already handled (a read: the claim itself is :func:`claim_command_in`)."""
    with db.read() as session:
        return session.get(CommandExecution, (comment_id, command_hash)) is not None


def release_command_in(session: Session, *, comment_id: int, command_hash: str) -> None:
    """:func:`release_command` inside the caller's transaction."""
    session.execute(
        delete(CommandExecution).where(
            CommandExecution.comment_id == comment_id, CommandExecution.command_hash == command_hash
        )
    )


def release_command(db: Database, *, comment_id: int, command_hash: str) -> None:
    """Forget a claim whose handling did not finish, so a redelivery may try again."""
    with db.begin() as session:
        release_command_in(session, comment_id=comment_id, command_hash=command_hash)


def claim_refusal_reply_in(session: Session, *, repo: str, issue_number: int, login: str, at: float,
                           window: float) -> bool:
    """:func:`claim_refusal_reply` inside the caller's transaction."""
    key = {"repo": repo, "issue_number": issue_number, "login": login.lower()}
    connection = session.connection()
    created = connection.execute(
        _insert(session, RefusalReply).values(**key, replied_at=at).on_conflict_do_nothing()
        .returning(RefusalReply.login)
    )
    if created.first() is not None:
        return True
    changed = connection.execute(
        update(RefusalReply)
        .where(RefusalReply.repo == repo, RefusalReply.issue_number == issue_number,
               RefusalReply.login == key["login"], RefusalReply.replied_at <= at - window)
        .values(replied_at=at)
        .returning(RefusalReply.login)
    )
    return changed.first() is not None


def claim_refusal_reply(db: Database, *, repo: str, issue_number: int, login: str, at: float,
                        window: float) -> bool:
    """True (and recorded) when ``login`` was not refused on this issue within ``window`` seconds."""
    with db.begin() as session:
        return claim_refusal_reply_in(session, repo=repo, issue_number=issue_number, login=login, at=at,
                                      window=window)


# Scheduling labels -------------------------------------------------------------------


def record_label_in(session: Session, repo: str, issue_number: int, label: str, *, added_by: str, trusted: bool,
                    at: float) -> None:
    """:func:`record_label` inside the caller's transaction."""
    values = {"added_by": added_by, "trusted": trusted, "added_at": at}
    session.execute(
        _insert(session, LabelActor)
        .values(repo=repo, issue_number=issue_number, label=label.lower(), **values)
        .on_conflict_do_update(index_elements=["repo", "issue_number", "label"], set_=values)
    )


def record_label(db: Database, repo: str, issue_number: int, label: str, *, added_by: str, trusted: bool,
                 at: float) -> None:
    """Remember who added ``label`` to an issue and whether they may steer (the latest addition wins)."""
    with db.begin() as session:
        record_label_in(session, repo, issue_number, label, added_by=added_by, trusted=trusted, at=at)


def forget_label(db: Database, repo: str, issue_number: int, label: str) -> None:
    """A label was removed: whoever added it no longer vouches for the issue."""
    with db.begin() as session:
        session.execute(
            delete(LabelActor).where(
                LabelActor.repo == repo, LabelActor.issue_number == issue_number, LabelActor.label == label.lower()
            )
        )


def trusted_labels(session: Session, repo: str) -> dict[int, tuple[str, ...]]:
    """Per issue of ``repo``, the (lower-case) labels added by someone who may steer."""
    found: dict[int, list[str]] = {}
    for number, label in session.execute(
        select(LabelActor.issue_number, LabelActor.label)
        .where(LabelActor.repo == repo, LabelActor.trusted.is_(True))
        .order_by(LabelActor.issue_number, LabelActor.label)
    ):
        found.setdefault(number, []).append(label)
    return {number: tuple(labels) for number, labels in found.items()}


# Run notes ----------------------------------------------------------------------------


def add_run_note_in(session: Session, run_id: str, note: str, *, limit: int = MAX_RUN_NOTES) -> Run | None:
    """:func:`add_run_note` inside the caller's transaction."""
    run = session.get(Run, run_id, with_for_update=True)
    if run is None:
        return None
    notes = list(run.notes or [])
    if note in notes or len(notes) >= limit:
        return None
    run.notes = [*notes, note]
    session.flush()
    session.refresh(run)
    return run


def add_run_note(db: Database, run_id: str, note: str, *, limit: int = MAX_RUN_NOTES) -> Run | None:
    """Append ``note`` to a run's status-comment notes; the run when it changed, None otherwise.

    A note already present, or a run already holding ``limit`` notes, changes nothing.
    """
    with db.begin() as session:
        return add_run_note_in(session, run_id, note, limit=limit)
