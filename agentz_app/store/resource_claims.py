"""File, module and issue claims a run holds while it changes code, and waking the runs they deferred."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from agentz_app.errors import StoreError
from agentz_app.store.models import Claim, Run
from agentz_app.store.queue_core import RETRIES, Lease, QueueCore
from agentz_app.store.resources import repository_resource, resource_kind


class ResourceClaims(QueueCore):
    """All-or-nothing resource claims with overlap checks."""

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
                    run = self._fenced(session, lease)
                    rows = session.execute(select(Claim.resource, Claim.run_id).where(Claim.resource.in_(wanted)))
                    held = {resource: holder for resource, holder in rows}
                    conflicts = [r for r in wanted if held.get(r, run.id) != run.id]
                    conflicts += self._overlaps(session, run, wanted)
                    if conflicts:
                        self._event(session, run.id, "claims_conflict", from_status=run.status,
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
            run = self._locked(session, run_id)
            if self._drop_claims(session, run, keep_issue=keep_issue):
                self._event(session, run.id, "resources_released", from_status=run.status,
                            to_status=run.status, keep_issue=keep_issue)
            self._wake_deferred(session, run.repo)
