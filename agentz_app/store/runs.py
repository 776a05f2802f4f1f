"""The durable run queue: enqueue, atomic claims, leases with fencing, resource claims.

:class:`RunQueue` is the union of the queue's parts, each in its own module:
enqueueing (:mod:`.enqueue`), reads (:mod:`.run_reads`), claims and leases
(:mod:`.claims`), status changes and events (:mod:`.transitions`), file and module
claims (:mod:`.resource_claims`) and the reporter's claim (:mod:`.report_claims`).
The same code serves SQLite (``BEGIN IMMEDIATE``) and PostgreSQL (``FOR UPDATE SKIP LOCKED``).
"""

from __future__ import annotations

from agentz_app.store.claims import Claimed, LeaseClaims
from agentz_app.store.enqueue import MODES, Enqueueing
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
from agentz_app.store.transitions import Moved, Transitions

__all__ = [
    "MODES", "WAITING_ON_SHA", "WHOLE_REPOSITORY", "Claimed", "Clock", "Lease", "Moved", "RunQueue",
    "change_resources", "file_resource", "issue_resource", "module_resource", "new_run_id", "path_module",
    "repository_resource", "resource_kind", "resume_status",
]


class RunQueue(Enqueueing, RunReads, LeaseClaims, Transitions, ResourceClaims, ReportClaims):
    """Repository API over runs, claims and events."""
