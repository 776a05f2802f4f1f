"""SQLAlchemy models: the whole durable state of Agent-Z.

Times we compute ourselves are epoch seconds (floats): they compare the same way on
SQLite and PostgreSQL and make lease arithmetic trivial. GitHub's own ``updated_at``
values are kept as the ISO strings GitHub sends; in that format they sort correctly.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from agentz_app.domain.states import LIVE


def now() -> float:
    """Current time as epoch seconds; the single clock every table uses."""
    return time.time()


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, list[str]: JSON, list[int]: JSON}


class Delivery(Base):
    """One webhook delivery in the inbox, stored once per ``X-GitHub-Delivery``.

    A delivery is pending until ``processed_at`` (a handler run succeeded) or
    ``dead_at`` (it failed MAX_DELIVERY_ATTEMPTS times; retried only by an operator).
    """

    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_pending", "processed_at", "dead_at", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(String(64), unique=True)
    event: Mapped[str] = mapped_column(String(64))
    action: Mapped[str | None] = mapped_column(String(64))
    installation_id: Mapped[int | None] = mapped_column(BigInteger)
    repo: Mapped[str | None] = mapped_column(String(200))
    payload: Mapped[str] = mapped_column(Text)
    received_at: Mapped[float] = mapped_column(Float, default=now)
    processed_at: Mapped[float | None] = mapped_column(Float)
    next_attempt_at: Mapped[float | None] = mapped_column(Float)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    dead_at: Mapped[float | None] = mapped_column(Float)


class Installation(Base):
    __tablename__ = "installations"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    account: Mapped[str] = mapped_column(String(200))
    suspended: Mapped[bool] = mapped_column(default=False)
    deleted: Mapped[bool] = mapped_column(default=False)
    updated_at: Mapped[float] = mapped_column(Float, default=now)


class Repository(Base):
    __tablename__ = "repositories"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    installation_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    full_name: Mapped[str] = mapped_column(String(200), unique=True)
    default_branch: Mapped[str] = mapped_column(String(200), default="main")
    private: Mapped[bool] = mapped_column(default=False)
    active: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[float] = mapped_column(Float, default=now)


class IssueSnapshot(Base):
    """Latest known state of an issue, plus the scheduler's latest verdict on it."""

    __tablename__ = "issues"
    __table_args__ = (UniqueConstraint("repo", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    repo: Mapped[str] = mapped_column(String(200))
    number: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(16), default="open")
    state_reason: Mapped[str | None] = mapped_column(String(32))
    labels: Mapped[list[str]] = mapped_column(default=list)
    assignees: Mapped[list[str]] = mapped_column(default=list)
    author: Mapped[str] = mapped_column(String(200), default="")
    author_association: Mapped[str | None] = mapped_column(String(32))  # GitHub's OWNER, MEMBER … NONE
    is_pull_request: Mapped[bool] = mapped_column(default=False)
    updated_at: Mapped[str] = mapped_column(String(40), default="")
    verdict: Mapped[str | None] = mapped_column(String(200))
    verdict_reason: Mapped[str | None] = mapped_column(Text)
    verdict_at: Mapped[float | None] = mapped_column(Float)
    synced_at: Mapped[float] = mapped_column(Float, default=now)


class PullSnapshot(Base):
    """Latest known state of a pull request."""

    __tablename__ = "pulls"
    __table_args__ = (UniqueConstraint("repo", "number"), Index("ix_pulls_head_sha", "repo", "head_sha"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    repo: Mapped[str] = mapped_column(String(200))
    number: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(Text, default="")
    body: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(16), default="open")
    merged: Mapped[bool] = mapped_column(default=False)
    draft: Mapped[bool] = mapped_column(default=False)
    author: Mapped[str] = mapped_column(String(200), default="")
    head_ref: Mapped[str] = mapped_column(String(255), default="")
    head_sha: Mapped[str] = mapped_column(String(64), default="")
    base_ref: Mapped[str] = mapped_column(String(255), default="")
    linked_issues: Mapped[list[int]] = mapped_column(default=list)
    review_state: Mapped[str | None] = mapped_column(String(32))
    updated_at: Mapped[str] = mapped_column(String(40), default="")
    synced_at: Mapped[float] = mapped_column(Float, default=now)


class IssueComment(Base):
    """A comment on an issue or pull request (dependencies and feedback live here too)."""

    __tablename__ = "comments"
    __table_args__ = (Index("ix_comments_issue", "repo", "issue_number"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    repo: Mapped[str] = mapped_column(String(200))
    issue_number: Mapped[int] = mapped_column(Integer)
    author: Mapped[str] = mapped_column(String(200), default="")
    author_association: Mapped[str | None] = mapped_column(String(32))  # GitHub's OWNER, MEMBER … NONE
    body: Mapped[str] = mapped_column(Text, default="")
    from_app: Mapped[bool] = mapped_column(default=False)
    kind: Mapped[str] = mapped_column(String(16), default="issue")  # issue | review | review_comment
    updated_at: Mapped[str] = mapped_column(String(40), default="")


class CheckResult(Base):
    """One CI signal for a head SHA: a check run (key: its id), a check suite (key: its id) or a
    commit status (key: its context), as last seen."""

    __tablename__ = "check_results"
    __table_args__ = (UniqueConstraint("repo", "head_sha", "source", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    repo: Mapped[str] = mapped_column(String(200))
    head_sha: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))  # check_run | check_suite | status
    key: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    suite_id: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(32), default="queued")
    conclusion: Mapped[str | None] = mapped_column(String(32))
    app_slug: Mapped[str | None] = mapped_column(String(200))
    summary: Mapped[str] = mapped_column(Text, default="")
    runs: Mapped[int] = mapped_column(Integer, default=0)  # a suite's check runs, as GitHub counted them
    updated_at: Mapped[str] = mapped_column(String(40), default="")  # GitHub's timestamp of this state
    first_seen_at: Mapped[float] = mapped_column(Float, default=now)
    changed_at: Mapped[float] = mapped_column(Float, default=now)  # when this state was first seen


class RepositoryCI(Base):
    """A repository that has reported CI (a check run or commit status of another App) at least once."""

    __tablename__ = "repository_ci"

    repo: Mapped[str] = mapped_column(String(200), primary_key=True)
    first_source: Mapped[str] = mapped_column(String(255), default="")
    first_seen_at: Mapped[float] = mapped_column(Float, default=now)


# The runs the claim-order index holds: live and unleased, so it stays as small as the backlog.
# A claim statement repeats the status term word for word, so SQLite (which matches a partial
# index's terms literally) and PostgreSQL both use the index.
CLAIM_ORDER_STATUSES = tuple(sorted(LIVE))
CLAIM_ORDER_WHERE = "lease_owner IS NULL AND status IN ({})".format(
    ", ".join(f"'{status.value}'" for status in CLAIM_ORDER_STATUSES))


class Run(Base):
    """One attempt to deliver one issue as a reviewed pull request."""

    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_status", "status"),
        Index("ix_runs_issue", "repo", "issue_number"),
        # Claim order over the live runs nobody holds (see the claim statements in claim_sql).
        Index("ix_runs_claim_order", "status", "created_at", "id",
              postgresql_where=text(CLAIM_ORDER_WHERE), sqlite_where=text(CLAIM_ORDER_WHERE)),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    repo: Mapped[str] = mapped_column(String(200))
    installation_id: Mapped[int | None] = mapped_column(BigInteger)
    issue_number: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(32), default="queued")
    stage: Mapped[str | None] = mapped_column(String(32))
    mode: Mapped[str] = mapped_column(String(16), default="full")  # full | plan_only
    force: Mapped[bool] = mapped_column(default=False)
    requested_by: Mapped[str | None] = mapped_column(String(200))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    infra_attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[float | None] = mapped_column(Float)
    heartbeat_at: Mapped[float | None] = mapped_column(Float)
    branch: Mapped[str | None] = mapped_column(String(255))
    base_branch: Mapped[str | None] = mapped_column(String(255))
    worktree_path: Mapped[str | None] = mapped_column(Text)
    plan: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    plan_raw: Mapped[str | None] = mapped_column(Text)
    session_id: Mapped[str | None] = mapped_column(String(255))
    session_host: Mapped[str | None] = mapped_column(String(255))  # HOST_ID whose agent home holds the session
    reviewer_session_id: Mapped[str | None] = mapped_column(String(255))
    reviewer_session_host: Mapped[str | None] = mapped_column(String(255))
    review_round: Mapped[int] = mapped_column(Integer, default=0)
    ci_round: Mapped[int] = mapped_column(Integer, default=0)
    feedback: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    pr_number: Mapped[int | None] = mapped_column(Integer)
    head_sha: Mapped[str | None] = mapped_column(String(64))
    checkpoint_sha: Mapped[str | None] = mapped_column(String(64))
    status_comment_id: Mapped[int | None] = mapped_column(BigInteger)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    tokens: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    notes: Mapped[list[str]] = mapped_column(default=list, server_default="[]")  # shown on the status comment
    # What GitHub should acknowledge for the latest request: ``issue`` (a label) or ``comment:<id>``.
    trigger_ref: Mapped[str | None] = mapped_column(String(64))
    # The ``updated_at`` GitHub last showed; the run's GitHub view is stale while it is older.
    github_synced_at: Mapped[float | None] = mapped_column(Float)
    report_claimed_until: Mapped[float | None] = mapped_column(Float)  # one reporter at a time per run
    created_at: Mapped[float] = mapped_column(Float, default=now)
    updated_at: Mapped[float] = mapped_column(Float, default=now)
    finished_at: Mapped[float | None] = mapped_column(Float)


class Claim(Base):
    """A resource held by an active run; the primary key makes overlaps impossible."""

    __tablename__ = "claims"

    resource: Mapped[str] = mapped_column(String(600), primary_key=True)
    run_id: Mapped[str] = mapped_column(String(32), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # issue | file | module
    claimed_at: Mapped[float] = mapped_column(Float, default=now)


class Event(Base):
    """Append-only history: one row per run transition and other notable facts."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str | None] = mapped_column(String(32), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    from_status: Mapped[str | None] = mapped_column(String(32))
    to_status: Mapped[str | None] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class SideEffect(Base):
    """A GitHub object created for a run (PR, comment, check run), so retries edit it."""

    __tablename__ = "side_effects"
    __table_args__ = (UniqueConstraint("run_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(255))
    github_id: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[float] = mapped_column(Float, default=now)


class Process(Base):
    """A live Agent-Z process as seen by the supervisor and the dashboard (one row per host and name)."""

    __tablename__ = "processes"

    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    role: Mapped[str] = mapped_column(String(32))
    pid: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(32), default="starting")
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[float] = mapped_column(Float, default=now)
    heartbeat_at: Mapped[float] = mapped_column(Float, default=now)
    detail: Mapped[str] = mapped_column(Text, default="")
    restart_at: Mapped[float | None] = mapped_column(Float)  # when a child in backoff restarts
    recent_crashes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # in the breaker's window


class DirtyMark(Base):
    """A repository whose candidate snapshot changed since the scheduler last evaluated it."""

    __tablename__ = "scheduler_dirty_marks"

    repo: Mapped[str] = mapped_column(String(200), primary_key=True)
    since: Mapped[float] = mapped_column(Float)  # the first change not yet scheduled
    last: Mapped[float] = mapped_column(Float)  # the latest change
    reason: Mapped[str] = mapped_column(Text, default="")


class SchedulerPass(Base):
    """What the scheduler's latest ranking pass over a repository did."""

    __tablename__ = "scheduler_passes"

    repo: Mapped[str] = mapped_column(String(200), primary_key=True)
    at: Mapped[float] = mapped_column(Float)
    calls: Mapped[int] = mapped_column(Integer, default=0)
    prompt_chars: Mapped[int] = mapped_column(Integer, default=0)
    candidates: Mapped[int] = mapped_column(Integer, default=0)
    assessed: Mapped[int] = mapped_column(Integer, default=0)
    admitted: Mapped[int] = mapped_column(Integer, default=0)


class ResyncCursor(Base):
    """When a repository's snapshots were last resynced from GitHub, and the last failure."""

    __tablename__ = "resync_cursors"

    repo: Mapped[str] = mapped_column(String(200), primary_key=True)
    ok_at: Mapped[float | None] = mapped_column(Float)
    failed_at: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str] = mapped_column(Text, default="")


class PruneMarker(Base):
    """When a retention prune (the database's, or one host's STATE_DIR) last started and finished."""

    __tablename__ = "prune_markers"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    started_at: Mapped[float | None] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float)
    removed: Mapped[dict[str, Any] | None] = mapped_column()  # what the finished prune removed


class RestartRequest(Base):
    """An operator's request that the supervisor on ``host`` restart its child ``name``."""

    __tablename__ = "restart_requests"

    host: Mapped[str] = mapped_column(String(255), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    requested_at: Mapped[float] = mapped_column(Float, default=now)
    actor: Mapped[str] = mapped_column(String(200), default="operator")


class RenderedDigest(Base):
    """The digest of what the coordinator last rendered to GitHub for one of a run's objects."""

    __tablename__ = "rendered_digests"

    run_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    digest: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[float] = mapped_column(Float, default=now)


class ActorPermission(Base):
    """A person's permission on a repository as GitHub last answered it (the permission rule's memory)."""

    __tablename__ = "actor_permissions"

    repo: Mapped[str] = mapped_column(String(200), primary_key=True)
    login: Mapped[str] = mapped_column(String(200), primary_key=True)  # lower case
    permission: Mapped[str | None] = mapped_column(String(32))
    role_name: Mapped[str | None] = mapped_column(String(100))
    checked_at: Mapped[float] = mapped_column(Float, default=now)


class CommandExecution(Base):
    """A slash command handled once: keyed by comment and command, so edits and redeliveries repeat nothing."""

    __tablename__ = "command_executions"

    comment_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    command_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    repo: Mapped[str] = mapped_column(String(200))
    issue_number: Mapped[int] = mapped_column(Integer)
    login: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[float] = mapped_column(Float, default=now)


class RefusalReply(Base):
    """When someone without write access was last told so on an issue (replies are throttled)."""

    __tablename__ = "refusal_replies"

    repo: Mapped[str] = mapped_column(String(200), primary_key=True)
    issue_number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    login: Mapped[str] = mapped_column(String(200), primary_key=True)  # lower case
    replied_at: Mapped[float] = mapped_column(Float, default=now)


class LabelActor(Base):
    """Who added a scheduling label (eligible or trigger) to an issue, and whether they may steer."""

    __tablename__ = "label_actors"

    repo: Mapped[str] = mapped_column(String(200), primary_key=True)
    issue_number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    label: Mapped[str] = mapped_column(String(255), primary_key=True)  # lower case
    added_by: Mapped[str] = mapped_column(String(200))
    trusted: Mapped[bool] = mapped_column(default=False)
    added_at: Mapped[float] = mapped_column(Float, default=now)


class IssueAssessment(Base):
    """The Scheduler Agent's word on one issue, valid while the issue's content fingerprint is unchanged."""

    __tablename__ = "issue_assessments"

    repo: Mapped[str] = mapped_column(String(200), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    fingerprint: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))  # ranked | rejected | unranked
    score: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text, default="")
    assessed_at: Mapped[float] = mapped_column(Float, default=now)


class DependencyLookup(Base):
    """A referenced issue missing from the snapshots, as GitHub last answered about it.

    ``state`` is None when the App could not read it; ``error`` then says why.
    ``needed_by`` lists the repositories whose issues depend on it (marked dirty when it changes).
    """

    __tablename__ = "dependency_lookups"

    repo: Mapped[str] = mapped_column(String(200), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    state: Mapped[str | None] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    needed_by: Mapped[list[str]] = mapped_column(default=list)
    checked_at: Mapped[float] = mapped_column(Float, default=now)


class RepoConfigRow(Base):
    """A repository's ``.github/agent-z.yml`` as last read from its default branch (see agentz_app.repo_config)."""

    __tablename__ = "repo_configs"

    repo: Mapped[str] = mapped_column(String(200), primary_key=True)
    commit_sha: Mapped[str] = mapped_column(String(64))
    blob_sha: Mapped[str | None] = mapped_column(String(64))
    config: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    problems: Mapped[list[Any]] = mapped_column(default=list)
    reported_sha: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[float] = mapped_column(Float, default=now)


class RunWakeup(Base):
    """A fact a webhook recorded about a run, waiting for a worker to act on it.

    One row per run and ``key`` (the kind of fact, e.g. ``ci`` or ``review:<id>``): recording
    it again while it waits bumps ``generation``, so a worker acting on older facts keeps
    the row for the next pass. A worker holds it under a lease while it acts.
    """

    __tablename__ = "run_wakeups"
    __table_args__ = (Index("ix_run_wakeups_due", "due_at"),)

    run_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    reason: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    woken_at: Mapped[float] = mapped_column(Float, default=now)
    due_at: Mapped[float] = mapped_column(Float, default=now)
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[float | None] = mapped_column(Float)
