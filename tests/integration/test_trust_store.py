"""The permission rule's tables on SQLite and PostgreSQL: claims agree, upserts replace."""

from __future__ import annotations

from agentz_app.store import trust
from agentz_app.store.db import Database
from agentz_app.store.runs import RunQueue

REPO = "acme/app"


def test_a_command_is_claimed_once_until_released(db: Database) -> None:
    def claim(command_hash: str = "h1") -> bool:
        return trust.claim_command(db, comment_id=9, command_hash=command_hash, repo=REPO, issue_number=7,
                                   login="alice", at=1.0)

    assert claim() is True
    assert claim() is False
    assert claim("h2") is True
    trust.release_command(db, comment_id=9, command_hash="h1")
    assert claim() is True


def test_refusal_replies_are_claimed_once_per_window(db: Database) -> None:
    def claim(login: str, at: float, number: int = 7) -> bool:
        return trust.claim_refusal_reply(db, repo=REPO, issue_number=number, login=login, at=at, window=3600)

    assert [claim("Mallory", 0.0), claim("mallory", 10.0), claim("mallory", 20.0, 8), claim("eve", 30.0)] == [
        True, False, True, True]
    assert [claim("mallory", 3599.0), claim("mallory", 3600.0), claim("mallory", 3700.0)] == [False, True, False]


def test_stored_permissions_are_replaced_by_newer_answers(db: Database) -> None:
    trust.save_permission(db, REPO, "Alice", permission="write", role_name="write", at=1.0)
    trust.save_permission(db, REPO, "alice", permission="read", role_name="read", at=2.0)
    with db.read() as session:
        row = trust.stored_permission(session, REPO, "ALICE")
        assert row is not None
        assert (row.permission, row.checked_at) == ("read", 2.0)
        assert set(trust.stored_permissions(session, REPO, ["alice", "bob"])) == {"alice"}


def test_label_adders_are_recorded_and_forgotten(db: Database) -> None:
    trust.record_label(db, REPO, 7, "Ready", added_by="tina", trusted=False, at=1.0)
    trust.record_label(db, REPO, 8, "ready", added_by="alice", trusted=True, at=1.0)
    with db.read() as session:
        assert trust.trusted_labels(session, REPO) == {8: ("ready",)}
    trust.record_label(db, REPO, 7, "ready", added_by="alice", trusted=True, at=2.0)
    trust.forget_label(db, REPO, 8, "READY")
    with db.read() as session:
        assert trust.trusted_labels(session, REPO) == {7: ("ready",)}


def test_run_notes_are_added_once_and_capped(db: Database) -> None:
    run, _ = RunQueue(db).intake.enqueue(REPO, 7)
    assert run.notes == []
    noted = trust.add_run_note(db, run.id, "Ignored feedback from @a (no write access).")
    assert noted is not None
    assert noted.notes == ["Ignored feedback from @a (no write access)."]
    assert trust.add_run_note(db, run.id, "Ignored feedback from @a (no write access).") is None
    for index in range(10):
        trust.add_run_note(db, run.id, f"note {index}")
    assert len(RunQueue(db).reads.get(run.id).notes) == trust.MAX_RUN_NOTES
    assert trust.add_run_note(db, "missing", "x") is None
