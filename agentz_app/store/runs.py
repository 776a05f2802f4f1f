"""The durable run queue: enqueue, atomic claims, leases with fencing, resource claims.

:class:`RunQueue` builds the queue's parts once, each its own object over the same database
and clock, and names them: ``intake`` enqueues (:mod:`.enqueue`), ``reads`` answers queries
(:mod:`.run_reads`), ``leases`` claims runs and holds leases (:mod:`.claims`), ``moves``
changes statuses and appends events (:mod:`.transitions`), ``resources`` holds file and module
claims and wakes the runs they deferred (:mod:`.resource_claims`) and ``reports`` is the
reporter's claim (:mod:`.report_claims`). The parts share no state; what two of them do inside
one transaction is a session-level function of :mod:`.queue_core`. Code that needs one part
takes that part. The same code serves SQLite (``BEGIN IMMEDIATE``) and PostgreSQL
(``FOR UPDATE SKIP LOCKED``).
"""

from __future__ import annotations

from collections.abc import Sequence

from agentz_app.store.claims import Claimed, LeaseClaims
from agentz_app.store.db import Database
from agentz_app.store.enqueue import MODES, Intake
from agentz_app.store.models import now
from agentz_app.store.queue_core import Clock, Lease, new_run_id, resume_status
from agentz_app.store.report_claims import ReportClaims
from agentz_app.store.resource_claims import ResourceClaims
from agentz_app.store.resources import (
    WHOLE_REPOSITORY,
    change_resources,
    file_resource,
    issue_resource,
    module_resource,
    path_module,
    repository_resource,
    resource_kind,
)
from agentz_app.store.run_reads import WAITING_ON_SHA, RunReads
from agentz_app.store.single_statements import SingleStatements
from agentz_app.store.transitions import Moved, Transitions

__all__ = [
    "MODES", "WAITING_ON_SHA", "WHOLE_REPOSITORY", "Claimed", "Clock", "Intake", "Lease", "LeaseClaims", "Moved",
    "ReportClaims", "ResourceClaims", "RunQueue", "RunReads", "Transitions", "change_resources", "file_resource",
    "issue_resource", "module_resource", "new_run_id", "path_module", "repository_resource", "resource_kind",
    "resume_status",
]


class RunQueue:
    """The run queue's parts over one database and clock."""

    def __init__(
        self, db: Database, *, lease_seconds: float = 60.0, clock: Clock = now, secret_values: Sequence[str] = ()
    ) -> None:
        """``secret_values`` (with every secret recognised by shape) are redacted from stored errors."""
        self.db = db
        self.clock = clock
        # The claim and the fenced completion share one autocommit connection per thread (PostgreSQL).
        statements = SingleStatements(db.engine)
        self.leases = LeaseClaims(db, lease_seconds=lease_seconds, clock=clock, single_statements=statements)
        self.intake = Intake(db, clock=clock)
        self.reads = RunReads(db, clock=clock)
        self.moves = Transitions(db, clock=clock, secret_values=secret_values, single_statements=statements)
        self.resources = ResourceClaims(db, clock=clock)
        self.reports = ReportClaims(db, clock=clock)
