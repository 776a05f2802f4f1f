"""File, module and issue claims a run holds while it changes code, and waking the runs they deferred."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from agentz_app.domain.states import Status
from agentz_app.errors import StoreError
from agentz_app.store.db import Database
from agentz_app.store.models import Claim, Run, now
from agentz_app.store.queue_core import (
    RETRIES,
    Clock,
    Lease,
    drop_claims,
    fenced,
    locked,
    record_event,
    wake_deferred_in,
)
from agentz_app.store.resources import repository_resource, resource_kind


class ResourceClaims:
    """All-or-nothing resource claims with overlap checks."""

    def __init__(self, db: Database, *, clock: Clock = now) -> None:
        self.db = db
        self.clock = clock

    def claim_resources(self, lease: Lease, resources: Iterable[str]) -> list[str]:
        """Take file/module claims all-or-nothing; returns the conflicting resources
        (empty list on success). Re-claiming one's own resources is a no-op.

        Conflicts are recorded in a ``claims_conflict`` event so the run can be woken
        once they are released.
        """
        wanted = sorted(set(resources))
        kinds = {resource: resource_kind(resource) for resource in wanted}
        for _ in range(RETRIES):
            try:
                with self.db.begin() as session:
                    run = fenced(session, lease)
                    rows = session.execute(select(Claim.resource, Claim.run_id).where(Claim.resource.in_(wanted)))
                    held = {resource: holder for resource, holder in rows}
                    conflicts = [r for r in wanted if held.get(r, run.id) != run.id]
                    conflicts += self._overlaps(session, run, wanted)
                    if conflicts:
                        record_event(session, self.clock(), run.id, "claims_conflict", from_status=run.status,
                                     to_status=run.status, resources=conflicts, attempt=lease.attempt)
                        return conflicts
                    stamp = self.clock()
                    session.add_all(
                        Claim(resource=r, run_id=run.id, kind=kinds[r], claimed_at=stamp)
                        for r in wanted if r not in held
                    )
                    session.flush()
                    return []
            except IntegrityError:
                continue  # a concurrent claimer won a resource; re-read to report it
        raise StoreError(f"run {lease.run_id}: could not claim resources, concurrent updates")

    @staticmethod
    def _overlaps(session: Session, run: Run, wanted: Sequence[str]) -> list[str]:
        """Other runs' claims that overlap ``wanted`` without being equal to a wanted name: a
        whole-repository claim overlaps every file and module claim of that repository."""
        whole = repository_resource(run.repo)
        others = select(Claim.resource).where(Claim.run_id != run.id)
        if whole in wanted:
            rows = session.scalars(others.where(or_(
                Claim.resource.startswith(f"file:{run.repo}:", autoescape=True),
                Claim.resource.startswith(f"module:{run.repo}:", autoescape=True),
            )).order_by(Claim.resource))
            return [resource for resource in rows if resource != whole]
        if any(resource_kind(resource) in ("file", "module") for resource in wanted):
            return list(session.scalars(others.where(Claim.resource == whole)))
        return []

    def release_resources(self, run_id: str, *, keep_issue: bool = True) -> None:
        """Give back a run's file/module claims (and the issue claim unless ``keep_issue``),
        then wake deferred runs of the same repository whose conflicts are now free."""
        with self.db.begin() as session:
            run = locked(session, run_id)
            if drop_claims(session, run, keep_issue=keep_issue):
                record_event(session, self.clock(), run.id, "resources_released", from_status=run.status,
                             to_status=run.status, keep_issue=keep_issue)
            wake_deferred_in(session, run.repo, clock=self.clock)

    def wake_deferred(self, repo: str | None = None) -> list[str]:
        """Make deferred runs claimable again where their conflicting claims are free."""
        with self.db.begin() as session:
            repos = [repo] if repo is not None else list(
                session.scalars(select(Run.repo).where(Run.status == Status.DEFERRED).distinct()).all()
            )
            woken: list[str] = []
            for name in repos:
                woken += wake_deferred_in(session, name, clock=self.clock)
            return woken
