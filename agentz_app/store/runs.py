"""The durable run queue: enqueue, atomic claims, leases with fencing, resource claims.

Every write made by a lease holder is conditioned on ``(run id, attempt, owner)``: the
attempt number is a fencing token, so a zombie's late write changes nothing and
raises :class:`LeaseLost`. Every status change is one transaction that also
appends an :class:`Event` row. The same code serves SQLite (``BEGIN IMMEDIATE``)
and PostgreSQL (``FOR UPDATE SKIP LOCKED``).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from agentz_app.domain.states import (
    CLAIMABLE_BY_WORKER,
    LEASED,
    LIVE,
    RETRYABLE,
    TERMINAL,
    Status,
    can_transition,
)
from agentz_app.errors import IllegalTransition, LeaseLost, NotFound, StoreError
from agentz_app.secrets import redact_text
from agentz_app.store.db import Database
from agentz_app.store.models import Claim, Event, Run, now
from agentz_app.timestamps import github_time

_REPO_RE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
MODES = frozenset({"full", "plan_only"})
# Columns only the queue itself may write.
_PROTECTED = frozenset({"id", "status", "attempt", "lease_owner", "lease_expires_at", "heartbeat_at", "created_at",
                        "github_synced_at", "report_claimed_until"})
_WRITABLE = frozenset(c.key for c in Run.__table__.columns) - _PROTECTED
# Statuses whose runs a CI or review webhook may wake by head SHA.
WAITING_ON_SHA = frozenset({Status.WAITING_CHECKS, Status.DONE})
_RETRIES = 3
# Runs that start over or wait hold only their issue claim (so two waiting runs never block each other).
_ISSUE_ONLY = frozenset({Status.QUEUED, Status.DEFERRED})
# The module name of a whole-repository claim, and directories whose children are the packages.
WHOLE_REPOSITORY = "*"
_SOURCE_ROOTS = frozenset({"src", "lib", "packages"})
# Statuses whose start means the agent is changing the code (progress a checkpoint must cover).
_CODE_STAGES = (Status.DEVELOPING, Status.FIXING)
_PER_REPO_CLAIM_LOCK = 72787266  # pg advisory lock held by claims that honour a per-repository limit

Clock = Callable[[], float]


@dataclass(frozen=True)
class Lease:
    """What a claimer holds: the run id, its fencing token and the owner string."""

    run_id: str
    attempt: int
    owner: str


def issue_resource(repo: str, number: int) -> str:
    """The claim name of an issue."""
    return f"issue:{repo}#{number}"


def file_resource(repo: str, path: str) -> str:
    """The claim name of a file path in a repository."""
    return f"file:{repo}:{path}"


def module_resource(repo: str, name: str) -> str:
    """The claim name of a module (a coarser unit than a file)."""
    return f"module:{repo}:{name}"


def repository_resource(repo: str) -> str:
    """The claim name of a whole repository: it overlaps every file and module claim there."""
    return module_resource(repo, WHOLE_REPOSITORY)


def path_module(path: str) -> str | None:
    """The module a file path belongs to: its top-level directory (``src/<pkg>`` in a src
    layout); None for a file at the repository root (its file claim covers it)."""
    parts = [part for part in path.split("/") if part]
    if len(parts) < 2:
        return None
    if parts[0] in _SOURCE_ROOTS and len(parts) >= 3:
        return f"{parts[0]}/{parts[1]}"
    return parts[0]


def change_resources(repo: str, files: Iterable[str], modules: Iterable[str] = ()) -> list[str]:
    """What a change claims: each file, each file's module, each named module; the whole
    repository when neither files nor modules are known."""
    names = [name for name in files if name]
    wanted = {file_resource(repo, name) for name in names}
    wanted |= {module_resource(repo, module) for name in names if (module := path_module(name)) is not None}
    wanted |= {module_resource(repo, name.strip("/")) for name in modules if name.strip("/")}
    return sorted(wanted) if wanted else [repository_resource(repo)]


def resource_kind(resource: str) -> str:
    """The kind (issue, file, module) of a claim name; raises StoreError when unknown."""
    kind, sep, rest = resource.partition(":")
    if not sep or not rest or kind not in {"issue", "file", "module"}:
        raise StoreError(f"malformed claim resource {resource!r}")
    return kind


def resume_status(run: Run) -> Status:
    """Where a deferred or recovered run continues: ``ready`` with a plan, else ``queued``."""
    return Status.READY if run.plan is not None else Status.QUEUED


def _is_progress(kind: str, to_status: str | None, payload: Mapping[str, Any] | None) -> bool:
    if kind == "agent_call":
        return (payload or {}).get("role") == "developer"
    return kind in ("transition", "claimed") and to_status in _CODE_STAGES


def new_run_id() -> str:
    """A short random hex run id."""
    return secrets.token_hex(6)


def _check_fields(fields: Mapping[str, Any]) -> None:
    unknown = set(fields) - _WRITABLE
    if unknown:
        raise StoreError(f"cannot write run fields: {', '.join(sorted(unknown))}")


class RunQueue:
    """Repository API over runs, claims and events."""

    def __init__(
        self, db: Database, *, lease_seconds: float = 60.0, clock: Clock = now, secret_values: Sequence[str] = ()
    ) -> None:
        """``secret_values`` (with every secret recognised by shape) are redacted from stored errors."""
        if lease_seconds <= 0:
            raise StoreError("lease_seconds must be positive")
        self.db = db
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.secret_values = tuple(secret_values)

    def _clean_error(self, error: str | None) -> str | None:
        return None if error is None else redact_text(error, values=self.secret_values)

    # Internal helpers ---------------------------------------------------

    def _event(
        self,
        session: Session,
        run_id: str | None,
        kind: str,
        *,
        from_status: str | None = None,
        to_status: str | None = None,
        **payload: Any,
    ) -> None:
        session.add(
            Event(
                run_id=run_id,
                kind=kind,
                from_status=from_status,
                to_status=to_status,
                payload={k: v for k, v in payload.items() if v is not None},
                created_at=self.clock(),
            )
        )

    @staticmethod
    def _locked(session: Session, run_id: str) -> Run:
        run = session.get(Run, run_id, with_for_update=True, populate_existing=True)
        if run is None:
            raise NotFound(f"run {run_id} not found")
        return run

    def _fenced(self, session: Session, lease: Lease) -> Run:
        """Lock the run and check that ``lease`` is still the current one."""
        run = session.get(Run, lease.run_id, with_for_update=True, populate_existing=True)
        if run is None or run.attempt != lease.attempt or run.lease_owner != lease.owner:
            raise LeaseLost(lease.run_id, lease.attempt)
        return run

    def _write(self, session: Session, lease: Lease, values: dict[str, Any]) -> Run:
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

    def _drop_claims(self, session: Session, run: Run, *, keep_issue: bool) -> bool:
        statement = delete(Claim).where(Claim.run_id == run.id)
        if keep_issue:
            statement = statement.where(Claim.kind != "issue")
        return bool(session.execute(statement).rowcount)  # type: ignore[attr-defined]

    def _drop_claims_for(self, session: Session, run: Run, goal: Status) -> bool:
        """Give back what ``goal`` no longer needs: a ``done`` run's PR is still open, so it
        keeps its file and module claims until it is merged or closed; other terminal
        statuses drop everything; queued and deferred keep only the issue claim."""
        if goal == Status.DONE:
            session.execute(delete(Claim).where(Claim.run_id == run.id, Claim.kind == "issue"))
            return False
        if goal in TERMINAL:
            return self._drop_claims(session, run, keep_issue=False)
        if goal in _ISSUE_ONLY:
            return self._drop_claims(session, run, keep_issue=True)
        return False

    def _take_issue_claim(self, session: Session, run: Run) -> None:
        resource = issue_resource(run.repo, run.issue_number)
        holder = session.get(Claim, resource)
        if holder is not None and holder.run_id != run.id:
            other = session.get(Run, holder.run_id)
            if other is not None and other.status in LIVE:
                raise StoreError(f"issue {run.repo}#{run.issue_number} already has live run {other.id}")
            session.delete(holder)
            session.flush()
        if holder is None or holder.run_id != run.id:
            session.add(Claim(resource=resource, run_id=run.id, kind="issue", claimed_at=self.clock()))
            session.flush()

    def _wake_deferred(self, session: Session, repo: str) -> list[str]:
        """Move deferred runs of ``repo`` whose conflicting claims are free back to claimable."""
        deferred = session.scalars(
            select(Run)
            .where(Run.repo == repo, Run.status == Status.DEFERRED)
            .order_by(Run.created_at)
            .with_for_update(skip_locked=True)
        ).all()
        woken: list[str] = []
        for run in deferred:
            conflicts = self._last_conflicts(session, run.id)
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
                .values(status=target, attempt=Run.attempt + 1, updated_at=self.clock())
                .execution_options(synchronize_session=False)
            )
            self._event(
                session, run.id, "transition", from_status=Status.DEFERRED, to_status=target,
                actor="queue", reason="conflicting claims released",
            )
            woken.append(run.id)
        return woken

    @staticmethod
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

    # Enqueue ------------------------------------------------------------

    def _enqueue_in(
        self,
        session: Session,
        repo: str,
        issue_number: int,
        *,
        installation_id: int | None,
        title: str,
        mode: str,
        force: bool,
        requested_by: str | None,
        reason: str,
        issue_updated_at: str = "",
        trigger_ref: str | None = None,
    ) -> tuple[Run, bool]:
        live = session.scalars(
            select(Run)
            .where(Run.repo == repo, Run.issue_number == issue_number, Run.status.in_(LIVE))
            .order_by(Run.created_at)
            .limit(1)
        ).first()
        if live is not None:
            return live, False
        stamp = self.clock()
        run = Run(
            id=new_run_id(), repo=repo, installation_id=installation_id, issue_number=issue_number, title=title,
            status=Status.QUEUED, mode=mode, force=force, requested_by=requested_by, attempt=0, infra_attempts=0,
            created_at=stamp, updated_at=stamp, cost_usd=0.0, tokens=0, review_round=0, ci_round=0,
            trigger_ref=trigger_ref,
        )
        session.add(run)
        session.flush()
        self._take_issue_claim(session, run)
        seen = {"issue_updated_at": issue_updated_at} if issue_updated_at else {}
        self._event(
            session, run.id, "enqueued", to_status=Status.QUEUED,
            requested_by=requested_by, reason=reason, mode=mode, force=force, **seen,
        )
        session.flush()
        return run, True

    @staticmethod
    def _validate_enqueue(repo: str, issue_number: int, mode: str) -> None:
        if not _REPO_RE.match(repo):
            raise StoreError(f"repository {repo!r} must look like owner/name")
        if issue_number < 1:
            raise StoreError(f"issue number must be positive, got {issue_number}")
        if mode not in MODES:
            raise StoreError(f"mode must be one of {', '.join(sorted(MODES))}, got {mode!r}")

    def enqueue(
        self,
        repo: str,
        issue_number: int,
        *,
        installation_id: int | None = None,
        title: str = "",
        mode: str = "full",
        force: bool = False,
        requested_by: str | None = None,
        reason: str = "",
        issue_updated_at: str = "",
        trigger_ref: str | None = None,
    ) -> tuple[Run, bool]:
        """Create a queued run holding the issue claim; returns (run, created).

        Idempotent: if a live run already holds the issue, that run is returned with
        ``created=False`` and nothing changes. ``issue_updated_at`` (GitHub's time of
        the issue state that asked for the run) is kept in the ``enqueued`` event, so a
        request delivered late can be told from a new one (:meth:`requested_since`).
        ``trigger_ref`` names what GitHub acknowledges (``issue`` or ``comment:<id>``).
        """
        self._validate_enqueue(repo, issue_number, mode)
        for _ in range(_RETRIES):
            try:
                with self.db.begin() as session:
                    return self._enqueue_in(
                        session, repo, issue_number, installation_id=installation_id, title=title, mode=mode,
                        force=force, requested_by=requested_by, reason=reason, issue_updated_at=issue_updated_at,
                        trigger_ref=trigger_ref,
                    )
            except IntegrityError:
                continue  # a concurrent enqueue took the issue claim first; re-read
        raise StoreError(f"could not enqueue {repo}#{issue_number}: concurrent updates")

    def enqueue_many(
        self, repo: str, issue_numbers: Iterable[int], *, reason: str = "", **options: Any
    ) -> list[tuple[Run, bool]]:
        """Enqueue several issues of one repository in a single transaction with bulk inserts.

        Same result as calling :meth:`enqueue` for each number (duplicates in the
        input and issues with a live run come back with ``created=False``).
        """
        numbers = list(dict.fromkeys(issue_numbers))
        mode = str(options.get("mode", "full"))
        for number in numbers:
            self._validate_enqueue(repo, number, mode)
        if not numbers:
            return []
        stamp = self.clock()
        with self.db.begin() as session:
            live = {
                run.issue_number: run
                for run in session.scalars(
                    select(Run).where(Run.repo == repo, Run.issue_number.in_(numbers), Run.status.in_(LIVE))
                ).all()
            }
            fresh = [n for n in numbers if n not in live]
            # Issue claims left behind by runs that are no longer live are stale.
            session.execute(
                delete(Claim).where(Claim.resource.in_([issue_resource(repo, n) for n in fresh]))
            )
            ids = {n: new_run_id() for n in fresh}
            common = {
                "repo": repo, "installation_id": options.get("installation_id"), "title": str(options.get("title", "")),
                "status": Status.QUEUED, "mode": mode, "force": bool(options.get("force", False)),
                "requested_by": options.get("requested_by"), "attempt": 0, "infra_attempts": 0,
                "created_at": stamp, "updated_at": stamp, "cost_usd": 0.0, "tokens": 0, "review_round": 0,
                "ci_round": 0,
            }
            if fresh:
                session.execute(insert(Run), [{**common, "id": ids[n], "issue_number": n} for n in fresh])
                session.execute(insert(Claim), [
                    {"resource": issue_resource(repo, n), "run_id": ids[n], "kind": "issue", "claimed_at": stamp}
                    for n in fresh
                ])
                payload = {k: v for k, v in {"requested_by": options.get("requested_by"), "reason": reason,
                                             "mode": mode, "force": common["force"]}.items() if v is not None}
                session.execute(insert(Event), [
                    {"run_id": ids[n], "kind": "enqueued", "from_status": None, "to_status": Status.QUEUED,
                     "payload": payload, "created_at": stamp}
                    for n in fresh
                ])
            created = {
                run.issue_number: run
                for run in session.scalars(select(Run).where(Run.id.in_(list(ids.values())))).all()
            }
        return [(live[n], False) if n in live else (created[n], True) for n in numbers]

    # Reads --------------------------------------------------------------

    def get(self, run_id: str) -> Run:
        """The run, or :class:`NotFound`."""
        with self.db.read() as session:
            run = session.get(Run, run_id)
        if run is None:
            raise NotFound(f"run {run_id} not found")
        return run

    def find(self, prefix: str) -> Run:
        """The run whose id is or starts with ``prefix`` (unique), or :class:`NotFound`."""
        if not re.fullmatch(r"[0-9a-f]{1,32}", prefix):
            raise NotFound(f"run {prefix!r} not found (ids are hex)")
        with self.db.read() as session:
            found = session.scalars(select(Run).where(Run.id.startswith(prefix)).limit(2)).all()
        if len(found) != 1:
            raise NotFound(f"run {prefix} not found" if not found else f"run id prefix {prefix} is ambiguous")
        return found[0]

    def live_run_for_issue(self, repo: str, issue_number: int) -> Run | None:
        """The live run of an issue, if any."""
        with self.db.read() as session:
            return session.scalars(
                select(Run)
                .where(Run.repo == repo, Run.issue_number == issue_number, Run.status.in_(LIVE))
                .order_by(Run.created_at)
                .limit(1)
            ).first()

    def requested_since(self, repo: str, issue_number: int, requested_at: str) -> Run | None:
        """The issue's newest run if it was enqueued from an issue state no older than ``requested_at``.

        Both times are GitHub's. A label or command whose webhook arrives late, or is
        processed again after a crash, may already have been answered by that run (the
        resync or the scheduler saw the same state first): such a request starts nothing.
        """
        asked = github_time(requested_at)
        if not asked:
            return None
        with self.db.read() as session:
            latest = session.scalars(
                select(Run).where(Run.repo == repo, Run.issue_number == issue_number)
                .order_by(Run.created_at.desc()).limit(1)
            ).first()
            if latest is None:
                return None
            enqueued = session.scalars(
                select(Event).where(Event.run_id == latest.id, Event.kind == "enqueued").limit(1)
            ).first()
        seen = github_time((enqueued.payload if enqueued is not None else {}).get("issue_updated_at"))
        return latest if seen >= asked else None

    def list_runs(
        self, *, statuses: Collection[str] | None = None, limit: int = 200, repo: str | None = None
    ) -> list[Run]:
        """Runs, newest first, optionally filtered by status and repository."""
        statement = select(Run).order_by(Run.created_at.desc(), Run.id).limit(limit)
        if statuses is not None:
            statement = statement.where(Run.status.in_([Status(s) for s in statuses]))
        if repo is not None:
            statement = statement.where(Run.repo == repo)
        with self.db.read() as session:
            return list(session.scalars(statement).all())

    def claims_of(self, run_id: str) -> list[str]:
        """The resources a run holds, sorted."""
        with self.db.read() as session:
            return sorted(session.scalars(select(Claim.resource).where(Claim.run_id == run_id)).all())

    def events(self, run_id: str) -> list[Event]:
        """A run's event timeline, oldest first."""
        with self.db.read() as session:
            return list(session.scalars(select(Event).where(Event.run_id == run_id).order_by(Event.id)).all())

    def runs_waiting_on_sha(
        self, repo: str, head_sha: str, *, statuses: Collection[str] = WAITING_ON_SHA
    ) -> list[Run]:
        """Runs of ``repo`` whose pushed head is ``head_sha`` and that CI results can wake."""
        with self.db.read() as session:
            return list(
                session.scalars(
                    select(Run)
                    .where(Run.repo == repo, Run.head_sha == head_sha, Run.status.in_(list(statuses)))
                    .order_by(Run.created_at)
                ).all()
            )

    def progress_is_saved(self, run_id: str) -> bool:
        """Whether the run's checkpoint is newer than its last reported progress: a developer
        call that finished, or the start of a stage that changes the code."""
        with self.db.read() as session:
            run = session.get(Run, run_id)
            if run is None or not run.checkpoint_sha:
                return False
            rows = session.execute(
                select(Event.id, Event.kind, Event.to_status, Event.payload)
                .where(Event.run_id == run_id, Event.kind.in_(("checkpoint", "agent_call", "transition", "claimed")))
            ).all()
        saved = max((row.id for row in rows if row.kind == "checkpoint"), default=None)
        progressed = max((row.id for row in rows if _is_progress(row.kind, row.to_status, row.payload)), default=None)
        return saved is not None and (progressed is None or saved > progressed)

    def expired(self, now: float | None = None) -> list[Run]:
        """Runs whose lease expired, plus runs in leased statuses that nobody holds or can claim."""
        moment = self.clock() if now is None else now
        stuck = LEASED - CLAIMABLE_BY_WORKER
        with self.db.read() as session:
            return list(
                session.scalars(
                    select(Run)
                    .where(
                        or_(
                            and_(Run.lease_owner.is_not(None), Run.lease_expires_at < moment),
                            and_(Run.lease_owner.is_(None), Run.status.in_(stuck)),
                        )
                    )
                    .order_by(Run.created_at)
                ).all()
            )

    def leased(self) -> list[Run]:
        """Runs that currently have a lease owner (expired or not)."""
        with self.db.read() as session:
            return list(session.scalars(select(Run).where(Run.lease_owner.is_not(None))).all())

    # Claims and leases --------------------------------------------------

    def claim(
        self,
        owner: str,
        *,
        statuses: Collection[str],
        target: str | None = None,
        per_repo_limit: int | None = None,
        run_id: str | None = None,
    ) -> tuple[Run, Lease] | None:
        """Atomically take the oldest unleased run in ``statuses``.

        Sets the lease, increments ``attempt`` and moves it to ``target`` (or keeps its
        status when None); statuses that cannot move to ``target`` are not considered.
        Returns None when nothing is claimable. With ``per_repo_limit``, runs of a
        repository that already has that many leased runs are skipped; with
        ``run_id`` only that run is considered.
        """
        claimed = self.claim_batch(owner, statuses=statuses, target=target, limit=1, per_repo_limit=per_repo_limit,
                                   run_id=run_id)
        return claimed[0] if claimed else None

    def claim_batch(
        self,
        owner: str,
        *,
        statuses: Collection[str],
        target: str | None = None,
        limit: int = 10,
        per_repo_limit: int | None = None,
        run_id: str | None = None,
    ) -> list[tuple[Run, Lease]]:
        """Claim up to ``limit`` runs in one transaction, oldest first; each gets its own lease.

        Same rules as :meth:`claim`; ``per_repo_limit`` also counts the runs this
        batch takes.
        """
        if not owner:
            raise StoreError("a claim needs a non-empty owner")
        if limit < 1:
            raise StoreError("a claim batch needs a positive limit")
        wanted = [Status(s) for s in statuses]
        if target is not None:
            wanted = [s for s in wanted if s == target or can_transition(s, target)]
            if not wanted:
                raise IllegalTransition("*", ",".join(sorted(map(str, statuses))), target)
        leased = or_(Run.status.in_(LEASED), Run.lease_owner.is_not(None))
        statement = (
            select(Run.id, Run.repo, Run.status, Run.attempt)
            .where(Run.status.in_(wanted), Run.lease_owner.is_(None))
            .order_by(Run.created_at, Run.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        if run_id is not None:
            statement = statement.where(Run.id == run_id)
        if per_repo_limit is not None:
            busy_repos = select(Run.repo).where(leased).group_by(Run.repo).having(func.count() >= per_repo_limit)
            statement = statement.where(Run.repo.not_in(busy_repos))
        with self.db.begin() as session:
            if per_repo_limit is not None and not self.db.is_sqlite:
                # Count and claim under one lock: with SKIP LOCKED alone, two workers could each
                # see a repository below its limit and both take a run of it. (SQLite's
                # BEGIN IMMEDIATE already serialises claims.)
                session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PER_REPO_CLAIM_LOCK})
            candidates = session.execute(statement).all()
            if not candidates:
                return []
            if per_repo_limit is not None and len(candidates) > 1:
                counts = dict(session.execute(select(Run.repo, func.count()).where(leased).group_by(Run.repo)).all())
                chosen = []
                for row in candidates:
                    if counts.get(row.repo, 0) < per_repo_limit:
                        counts[row.repo] = counts.get(row.repo, 0) + 1
                        chosen.append(row)
                candidates = chosen
                if not candidates:
                    return []
            stamp = self.clock()
            expires = stamp + self.lease_seconds
            claimed = session.scalars(
                update(Run)
                .where(Run.id.in_([row.id for row in candidates]), Run.lease_owner.is_(None))
                .values(
                    status=target if target is not None else Run.status, attempt=Run.attempt + 1,
                    lease_owner=owner, lease_expires_at=expires, heartbeat_at=stamp, updated_at=stamp,
                )
                .returning(Run),
                execution_options={"populate_existing": True},
            ).all()
            if len(claimed) != len(candidates):
                raise StoreError("runs changed while being claimed")
            by_id = {run.id: run for run in claimed}
            session.execute(
                insert(Event),
                [
                    {
                        "run_id": row.id, "kind": "claimed", "from_status": row.status,
                        "to_status": by_id[row.id].status, "created_at": stamp,
                        "payload": {"owner": owner, "attempt": row.attempt + 1, "expires_at": expires},
                    }
                    for row in candidates
                ],
            )
            return [(by_id[row.id], Lease(row.id, row.attempt + 1, owner)) for row in candidates]

    def heartbeat(self, lease: Lease) -> float:
        """Extend the lease; returns the new expiry or raises :class:`LeaseLost`."""
        stamp = self.clock()
        expires = stamp + self.lease_seconds
        with self.db.begin() as session:
            self._write(session, lease, {"lease_expires_at": expires, "heartbeat_at": stamp})
        return expires

    def transition(
        self,
        lease: Lease,
        target: str,
        *,
        stage: str | None = None,
        error: str | None = None,
        release: bool = False,
        event: dict[str, Any] | None = None,
        **fields: Any,
    ) -> Run:
        """Fenced status change + event row; ``release`` drops the lease (and for
        terminal statuses all claims). Raises LeaseLost or IllegalTransition.

        Moving to a status that needs no lease (ready, queued, waiting_checks,
        deferred, terminal ...) always drops the lease; moving to queued or deferred
        also gives back the run's file and module claims, so two waiting runs never
        block each other.
        """
        _check_fields(fields)
        goal = Status(target)
        error = self._clean_error(error)
        with self.db.begin() as session:
            run = self._fenced(session, lease)
            current = run.status
            if not can_transition(current, goal):
                raise IllegalTransition(run.id, current, goal)
            stamp = self.clock()
            values: dict[str, Any] = {"status": goal, "updated_at": stamp, **fields}
            if stage is not None:
                values["stage"] = stage
            if error is not None:
                values["error"] = error
            if release or goal not in LEASED:
                values.update(lease_owner=None, lease_expires_at=None)
            if goal in TERMINAL:
                values["finished_at"] = stamp
            updated = self._write(session, lease, values)
            freed = self._drop_claims_for(session, updated, goal)
            self._event(
                session, run.id, "transition", from_status=current, to_status=goal,
                actor=lease.owner, attempt=lease.attempt, stage=stage, error=error, **(event or {}),
            )
            if freed:
                self._wake_deferred(session, updated.repo)
            session.flush()
            return self._locked(session, run.id)

    def transition_many(
        self,
        leases: Sequence[Lease],
        target: str,
        *,
        error: str | None = None,
        event: dict[str, Any] | None = None,
    ) -> tuple[list[Run], list[Lease]]:
        """Move several held runs to ``target`` in one transaction; returns (moved runs, lost leases).

        Leases that are no longer held are skipped and returned, not raised; an
        illegal transition for any held run raises IllegalTransition and changes nothing.
        """
        goal = Status(target)
        error = self._clean_error(error)
        if not leases:
            return [], []
        with self.db.begin() as session:
            rows = session.scalars(
                select(Run).where(Run.id.in_([lease.run_id for lease in leases])).order_by(Run.id)
                .with_for_update(),
                execution_options={"populate_existing": True},
            ).all()
            current = {run.id: run for run in rows}
            held: list[tuple[Lease, str]] = []
            lost: list[Lease] = []
            for lease in leases:
                run = current.get(lease.run_id)
                if run is None or run.attempt != lease.attempt or run.lease_owner != lease.owner:
                    lost.append(lease)
                elif not can_transition(run.status, goal):
                    raise IllegalTransition(run.id, run.status, goal)
                else:
                    held.append((lease, run.status))
            if not held:
                return [], lost
            stamp = self.clock()
            values: dict[str, Any] = {"status": goal, "updated_at": stamp}
            if error is not None:
                values["error"] = error
            if goal not in LEASED:
                values.update(lease_owner=None, lease_expires_at=None)
            if goal in TERMINAL:
                values["finished_at"] = stamp
            ids = [lease.run_id for lease, _ in held]
            moved = session.scalars(
                update(Run).where(Run.id.in_(ids)).values(**values).returning(Run),
                execution_options={"populate_existing": True},
            ).all()
            freed = 0
            if goal in TERMINAL or goal in _ISSUE_ONLY:
                dropping = delete(Claim).where(Claim.run_id.in_(ids))
                if goal == Status.DONE:  # file and module claims stay until the PR is merged or closed
                    dropping = dropping.where(Claim.kind == "issue")
                elif goal not in TERMINAL:
                    dropping = dropping.where(Claim.kind != "issue")
                dropped = session.execute(dropping).rowcount  # type: ignore[attr-defined]
                freed = 0 if goal == Status.DONE else dropped
            extra = {k: v for k, v in (event or {}).items() if v is not None}
            session.execute(
                insert(Event),
                [
                    {
                        "run_id": lease.run_id, "kind": "transition", "from_status": previous, "to_status": goal,
                        "created_at": stamp,
                        "payload": {"actor": lease.owner, "attempt": lease.attempt,
                                    **({"error": error} if error is not None else {}), **extra},
                    }
                    for lease, previous in held
                ],
            )
            if freed:
                for repo in sorted({run.repo for run in moved}):
                    self._wake_deferred(session, repo)
            return list(moved), lost

    def defer(self, lease: Lease, conflicts: Collection[str], *, reason: str = "claims conflict",
              stage: str | None = None) -> Run:
        """Move a claimed run to ``deferred`` after ``claim_resources`` reported conflicts;
        ``stage`` says where it continues once woken."""
        return self.transition(lease, Status.DEFERRED, release=True, stage=stage,
                               event={"reason": reason, "conflicts": sorted(conflicts)})

    def update(self, lease: Lease, **fields: Any) -> Run:
        """Fenced update of run fields (plan, session ids, PR number, cost ...).

        A new checkpoint is also recorded as a ``checkpoint`` event: the reconciler compares
        it with the last reported progress to tell whether a lost attempt's work is saved.
        """
        _check_fields(fields)
        with self.db.begin() as session:
            run = self._write(session, lease, {**fields, "updated_at": self.clock()})
            if fields.get("checkpoint_sha"):
                self._event(session, run.id, "checkpoint", from_status=run.status, to_status=run.status,
                            sha=fields["checkpoint_sha"], attempt=lease.attempt)
            return run

    def add_cost(self, lease: Lease, cost_usd: float, tokens: int) -> Run:
        """Add an agent call's cost and tokens to the run (fenced)."""
        if cost_usd < 0 or tokens < 0:
            raise StoreError("cost and tokens must not be negative")
        with self.db.begin() as session:
            return self._write(
                session, lease,
                {"cost_usd": Run.cost_usd + cost_usd, "tokens": Run.tokens + tokens, "updated_at": self.clock()},
            )

    def add_leased_event(self, lease: Lease, kind: str, **payload: Any) -> None:
        """Append an event while ``lease`` still holds the run (fenced: LeaseLost otherwise); the run is unchanged."""
        with self.db.begin() as session:
            self._write(session, lease, {"lease_owner": Run.lease_owner})
            self._event(session, lease.run_id, kind, **payload)

    def release(self, lease: Lease) -> None:
        """Drop the lease without a status change (fenced)."""
        with self.db.begin() as session:
            run = self._write(
                session, lease, {"lease_owner": None, "lease_expires_at": None, "updated_at": self.clock()}
            )
            self._event(session, run.id, "released", from_status=run.status, to_status=run.status,
                        owner=lease.owner, attempt=lease.attempt)

    # Unfenced changes -----------------------------------------------------

    def _set_status_in(
        self,
        session: Session,
        run: Run,
        goal: Status,
        *,
        reason: str,
        actor: str,
        kind: str = "transition",
        event: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> Run:
        current = run.status
        stamp = self.clock()
        values: dict[str, Any] = {
            "status": goal, "attempt": run.attempt + 1, "lease_owner": None, "lease_expires_at": None,
            "updated_at": stamp, **fields,
        }
        if goal in TERMINAL:
            values["finished_at"] = stamp
        elif current in TERMINAL:
            values["finished_at"] = None
            self._take_issue_claim(session, run)
        session.execute(
            update(Run).where(Run.id == run.id, Run.attempt == run.attempt).values(**values)
            .execution_options(synchronize_session=False)
        )
        freed = self._drop_claims_for(session, run, goal)
        self._event(session, run.id, kind, from_status=current, to_status=goal, actor=actor, reason=reason,
                    attempt=run.attempt + 1, previous_owner=run.lease_owner, **dict(event or {}))
        if freed:
            self._wake_deferred(session, run.repo)
        session.flush()
        return self._locked(session, run.id)

    def set_status(
        self,
        run_id: str,
        target: str,
        *,
        reason: str,
        actor: str = "system",
        expected_attempt: int | None = None,
        guard: Callable[[Run], bool] | None = None,
        event: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> Run:
        """Unfenced status change for operators, webhooks and the reconciler.

        Bumps ``attempt`` so any current lease holder's next write raises LeaseLost,
        clears the lease, and releases claims on terminal statuses. With
        ``expected_attempt`` (or a ``guard`` evaluated on the locked row) the change
        only happens if the run is still as the caller saw it, LeaseLost otherwise,
        so a decision made on a stale read is dropped. ``event`` adds to the payload.
        """
        _check_fields(fields)
        goal = Status(target)
        for _ in range(_RETRIES):
            try:
                with self.db.begin() as session:
                    run = self._locked(session, run_id)
                    if expected_attempt is not None and run.attempt != expected_attempt:
                        raise LeaseLost(run_id, expected_attempt)
                    if guard is not None and not guard(run):
                        raise LeaseLost(run_id, run.attempt)
                    if not can_transition(run.status, goal):
                        raise IllegalTransition(run_id, run.status, goal)
                    return self._set_status_in(session, run, goal, reason=reason, actor=actor, event=event,
                                               **fields)
            except IntegrityError:
                continue  # a concurrent enqueue took the issue claim; re-check
        raise StoreError(f"run {run_id}: could not change status, concurrent updates")

    def revoke_lease(
        self,
        run_id: str,
        *,
        reason: str,
        actor: str = "reconciler",
        guard: Callable[[Run], bool] | None = None,
        **fields: Any,
    ) -> Run:
        """Take the lease away without a status change; bumps ``attempt`` to fence the holder."""
        _check_fields(fields)
        with self.db.begin() as session:
            run = self._locked(session, run_id)
            if guard is not None and not guard(run):
                raise LeaseLost(run_id, run.attempt)
            session.execute(
                update(Run).where(Run.id == run.id, Run.attempt == run.attempt)
                .values(attempt=run.attempt + 1, lease_owner=None, lease_expires_at=None, updated_at=self.clock(),
                        **fields)
                .execution_options(synchronize_session=False)
            )
            self._event(session, run.id, "lease_revoked", from_status=run.status, to_status=run.status,
                        actor=actor, reason=reason, attempt=run.attempt + 1, previous_owner=run.lease_owner)
            session.flush()
            return self._locked(session, run.id)

    def cancel(self, run_id: str, *, reason: str, actor: str = "operator", **fields: Any) -> Run:
        """Cancel a run: its holder loses the lease at its next write and all claims are freed."""
        return self.set_status(run_id, Status.CANCELLED, reason=reason, actor=actor, **fields)

    def resume(self, run_id: str, *, reason: str = "resumed by operator", actor: str = "operator",
               trigger_ref: str | None = None) -> Run:
        """Make a failed, needs_human, cancelled, deferred or stuck run claimable again.

        Retryable runs go back to ``queued`` with their infrastructure attempts reset;
        a deferred run goes to its resume status; a run in a leased status whose lease
        expired (or that nobody holds) goes where the reconciler would send it.
        """
        with self.db.begin() as session:
            run = self._locked(session, run_id)
            status = Status(run.status)
            if trigger_ref is not None:
                run.trigger_ref = trigger_ref
            if status in RETRYABLE:
                return self._set_status_in(session, run, Status.QUEUED, reason=reason, actor=actor,
                                           infra_attempts=0, error=None, trigger_ref=run.trigger_ref)
            if status == Status.DEFERRED:
                return self._set_status_in(session, run, resume_status(run), reason=reason, actor=actor)
            expired = run.lease_owner is None or (run.lease_expires_at or 0.0) < self.clock()
            if status in LEASED and expired:
                goal = Status.QUEUED if status == Status.PLANNING else Status.READY
                return self._set_status_in(session, run, goal, reason=reason, actor=actor,
                                           stage=run.stage or (None if goal == Status.QUEUED else status))
            if status in LEASED:
                raise StoreError(
                    f"run {run_id} is {status} and leased by {run.lease_owner}; cancel it to stop it"
                )
            raise StoreError(f"run {run_id} is {status}; only failed, needs_human, cancelled, deferred "
                             "or stuck runs can be resumed")

    def adopt_pr(self, run_id: str, pr_number: int, *, head_sha: str | None, branch: str | None,
                 reason: str, actor: str = "reconciler") -> Run:
        """Attach someone else's open PR to a live run and wait for its checks.

        The one deliberate jump outside the state machine: any live run without a PR
        moves to ``waiting_checks``; its lease is revoked and file/module claims freed.
        """
        with self.db.begin() as session:
            run = self._locked(session, run_id)
            if run.status not in LIVE or run.pr_number is not None:
                raise IllegalTransition(run_id, run.status, Status.WAITING_CHECKS)
            self._drop_claims(session, run, keep_issue=True)
            return self._set_status_in(session, run, Status.WAITING_CHECKS, reason=reason, actor=actor,
                                       kind="adopted", pr_number=pr_number, head_sha=head_sha, branch=branch)

    def claim_resources(self, lease: Lease, resources: Iterable[str]) -> list[str]:
        """Take file/module claims all-or-nothing; returns the conflicting resources
        (empty list on success). Re-claiming one's own resources is a no-op.

        Conflicts are recorded in a ``claims_conflict`` event so the run can be woken
        once they are released.
        """
        wanted = sorted(set(resources))
        kinds = {resource: resource_kind(resource) for resource in wanted}
        for _ in range(_RETRIES):
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

    def wake_deferred(self, repo: str | None = None) -> list[str]:
        """Make deferred runs claimable again where their conflicting claims are free."""
        with self.db.begin() as session:
            repos = [repo] if repo is not None else list(
                session.scalars(select(Run.repo).where(Run.status == Status.DEFERRED).distinct()).all()
            )
            woken: list[str] = []
            for name in repos:
                woken += self._wake_deferred(session, name)
            return woken

    # The GitHub view ------------------------------------------------------

    def stale_on_github(self, *, quiet_since: float, limit: int = 20) -> list[Run]:
        """Runs whose GitHub view is behind their state and that no reporter holds, oldest change first.

        A run still changing (updated after ``quiet_since``) waits, so quick transitions cost
        one edit; a run never shown and a finished run are due at once.
        """
        moment = self.clock()
        behind = or_(Run.github_synced_at.is_(None), Run.github_synced_at < Run.updated_at)
        free = or_(Run.report_claimed_until.is_(None), Run.report_claimed_until < moment)
        due = or_(Run.updated_at <= quiet_since, Run.github_synced_at.is_(None), Run.status.in_(TERMINAL))
        with self.db.read() as session:
            return list(session.scalars(
                select(Run).where(behind, free, due).order_by(Run.updated_at, Run.id).limit(limit)
            ).all())

    def claim_report(self, run_id: str, *, seconds: float) -> Run | None:
        """Take the run's reporter claim for ``seconds``; the run as it is now, or None when someone holds it."""
        moment = self.clock()
        with self.db.begin() as session:
            taken = session.execute(
                update(Run)
                .where(Run.id == run_id,
                       or_(Run.report_claimed_until.is_(None), Run.report_claimed_until < moment))
                .values(report_claimed_until=moment + seconds)
                .execution_options(synchronize_session=False)
            ).rowcount  # type: ignore[attr-defined]
            if not taken:
                return None
            return session.get(Run, run_id, populate_existing=True)

    def finish_report(self, run_id: str, *, shown: float | None, retry_after: float = 0.0) -> None:
        """Give the reporter claim back; ``shown`` is the ``updated_at`` GitHub now shows (None: nothing new).

        Neither ``updated_at`` nor any status changes: reporting is not a change of the run.
        With ``retry_after`` the run is left alone that long (GitHub refused; try again later).
        """
        values: dict[str, Any] = {"report_claimed_until": self.clock() + retry_after if retry_after else None}
        if shown is not None:
            values["github_synced_at"] = shown
        with self.db.begin() as session:
            session.execute(update(Run).where(Run.id == run_id).values(**values)
                            .execution_options(synchronize_session=False))

    def add_event(self, run_id: str | None, kind: str, **payload: Any) -> None:
        """Append a free-form event (notable facts that are not status changes)."""
        with self.db.begin() as session:
            self._event(session, run_id, kind, **payload)
