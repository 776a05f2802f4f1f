"""What every part of the run queue shares: leases and the session-level helpers of one transaction.

Every write made by a lease holder is conditioned on ``(run id, attempt, owner)``: the
attempt number is a fencing token, so a zombie's late write changes nothing and
raises :class:`LeaseLost`. Every status change is one transaction that also
appends an :class:`Event` row.

The parts of the queue do not share state: each is built from the database and the clock,
and what two of them need inside a transaction is a function of the session here.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from agentz_app.domain.states import LIVE, TERMINAL, Status
from agentz_app.errors import LeaseLost, NotFound, StoreError
from agentz_app.secrets import redact_text
from agentz_app.store.models import Claim, Event, Run
from agentz_app.store.resources import issue_resource

# Columns only the queue itself may write.
_PROTECTED = frozenset({"id", "status", "attempt", "lease_owner", "lease_expires_at", "heartbeat_at", "created_at",
                        "github_synced_at", "report_claimed_until"})
_WRITABLE = frozenset(c.key for c in Run.__table__.columns) - _PROTECTED
RETRIES = 3
# Runs that start over or wait hold only their issue claim (so two waiting runs never block each other).
ISSUE_ONLY = frozenset({Status.QUEUED, Status.DEFERRED})

Clock = Callable[[], float]


@dataclass(frozen=True)
class Lease:
    """What a claimer holds: the run id, its fencing token and the owner string."""

    run_id: str
    attempt: int
    owner: str


def resume_status(run: Run) -> Status:
    """Where a deferred or recovered run continues: ``ready`` with a plan, else ``queued``."""
    return Status.READY if run.plan is not None else Status.QUEUED


def new_run_id() -> str:
    """A short random hex run id."""
    return secrets.token_hex(6)


def check_fields(fields: Mapping[str, Any]) -> None:
    """Raise StoreError when ``fields`` names a column only the queue may write."""
    unknown = set(fields) - _WRITABLE
    if unknown:
        raise StoreError(f"cannot write run fields: {', '.join(sorted(unknown))}")


def clean_error(error: str | None, secret_values: Sequence[str]) -> str | None:
    """``error`` with ``secret_values`` (and every secret recognised by shape) redacted."""
    return None if error is None else redact_text(error, values=secret_values)


def record_event(
    session: Session,
    stamp: float,
    run_id: str | None,
    kind: str,
    /,
    *,
    from_status: str | None = None,
    to_status: str | None = None,
    **payload: Any,
) -> None:
    """Append an event row created at ``stamp``; payload entries that are None are left out."""
    session.add(
        Event(
            run_id=run_id,
            kind=kind,
            from_status=from_status,
            to_status=to_status,
            payload={k: v for k, v in payload.items() if v is not None},
            created_at=stamp,
        )
    )


def locked(session: Session, run_id: str) -> Run:
    """Lock and load the run, or raise :class:`NotFound`."""
    run = session.get(Run, run_id, with_for_update=True, populate_existing=True)
    if run is None:
        raise NotFound(f"run {run_id} not found")
    return run


def fenced(session: Session, lease: Lease) -> Run:
    """Lock the run and check that ``lease`` is still the current one."""
    run = session.get(Run, lease.run_id, with_for_update=True, populate_existing=True)
    if run is None or run.attempt != lease.attempt or run.lease_owner != lease.owner:
        raise LeaseLost(lease.run_id, lease.attempt)
    return run


def write_fenced(session: Session, lease: Lease, values: dict[str, Any]) -> Run:
    """``UPDATE runs ... WHERE id AND attempt AND owner``; LeaseLost when no row matched."""
    statement = (
        update(Run)
        .where(Run.id == lease.run_id, Run.attempt == lease.attempt, Run.lease_owner == lease.owner)
        .values(**values)
        .returning(Run)
    )
    run = session.scalars(statement, execution_options={"populate_existing": True}).first()
    if run is None:
        raise LeaseLost(lease.run_id, lease.attempt)
    return run


def drop_claims(session: Session, run: Run, *, keep_issue: bool) -> bool:
    """Delete the run's claims (all but the issue claim with ``keep_issue``); whether any went."""
    statement = delete(Claim).where(Claim.run_id == run.id)
    if keep_issue:
        statement = statement.where(Claim.kind != "issue")
    return bool(session.execute(statement).rowcount)  # type: ignore[attr-defined]


def drop_claims_for(session: Session, run: Run, goal: Status) -> bool:
    """Give back what ``goal`` no longer needs: a ``done`` run's PR is still open, so it
    keeps its file and module claims until it is merged or closed; other terminal
    statuses drop everything; queued and deferred keep only the issue claim."""
    if goal == Status.DONE:
        session.execute(delete(Claim).where(Claim.run_id == run.id, Claim.kind == "issue"))
        return False
    if goal in TERMINAL:
        return drop_claims(session, run, keep_issue=False)
    if goal in ISSUE_ONLY:
        return drop_claims(session, run, keep_issue=True)
    return False


def take_issue_claim(session: Session, run: Run, *, clock: Clock) -> None:
    """Give the run its issue's claim; StoreError when another live run holds it (a dead holder loses it)."""
    resource = issue_resource(run.repo, run.issue_number)
    holder = session.get(Claim, resource)
    if holder is not None and holder.run_id != run.id:
        other = session.get(Run, holder.run_id)
        if other is not None and other.status in LIVE:
            raise StoreError(f"issue {run.repo}#{run.issue_number} already has live run {other.id}")
        session.delete(holder)
        session.flush()
    if holder is None or holder.run_id != run.id:
        session.add(Claim(resource=resource, run_id=run.id, kind="issue", claimed_at=clock()))
        session.flush()


def wake_deferred_in(session: Session, repo: str, *, clock: Clock) -> list[str]:
    """Move deferred runs of ``repo`` whose conflicting claims are free back to claimable."""
    deferred = session.scalars(
        select(Run)
        .where(Run.repo == repo, Run.status == Status.DEFERRED)
        .order_by(Run.created_at)
        .with_for_update(skip_locked=True)
    ).all()
    woken: list[str] = []
    for run in deferred:
        conflicts = _last_conflicts(session, run.id)
        if conflicts:
            held = session.scalars(
                select(Claim.resource).where(Claim.resource.in_(conflicts), Claim.run_id != run.id).limit(1)
            ).first()
            if held is not None:
                continue
        target = resume_status(run)
        session.execute(
            update(Run)
            .where(Run.id == run.id)
            .values(status=target, attempt=Run.attempt + 1, updated_at=clock())
            .execution_options(synchronize_session=False)
        )
        record_event(
            session, clock(), run.id, "transition", from_status=Status.DEFERRED, to_status=target,
            actor="queue", reason="conflicting claims released",
        )
        woken.append(run.id)
    return woken


def _last_conflicts(session: Session, run_id: str) -> list[str]:
    event = session.scalars(
        select(Event)
        .where(Event.run_id == run_id, Event.kind == "claims_conflict")
        .order_by(Event.id.desc())
        .limit(1)
    ).first()
    if event is None:
        return []
    return [str(r) for r in event.payload.get("resources", [])]
