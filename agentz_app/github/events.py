"""Typed slices of the webhook payloads Agent-Z reads.

Each model holds only the fields a handler reads (``extra="ignore"``), is frozen, and is
strict about types: a string is never taken for a number, nor a boolean for an id. A
payload that does not fit raises :class:`BadPayload`, which names the event and the
field (never the offending value, which is untrusted text). ``tests/contract`` checks
every field here against GitHub's published webhook schemas.

Handlers parse once at the top (``IssuesEvent.from_event(event)`` or
:func:`parse_event`) and read attributes. The same slice models read GitHub's REST
answers where they have the same shape (check runs, check suites, commit statuses).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Self, TypeVar

from gidgethub import sansio
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentz_app.errors import AgentZError


class BadPayload(AgentZError):
    """A webhook payload (or REST answer) lacks a field Agent-Z reads, or has it with the wrong type."""

    def __init__(self, event: str, field: str, problem: str) -> None:
        self.event = event
        self.field = field
        super().__init__(f"{event} payload: {field} {problem}")


class Slice(BaseModel):
    """Base of every payload slice: frozen, strict, unknown fields ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


# Objects -----------------------------------------------------------------------------


class User(Slice):
    """A GitHub account as payloads show it (``sender``, ``user``, ``account``)."""

    login: str = ""
    id: int | None = None
    type: str | None = None

    @property
    def is_bot(self) -> bool:
        """True when GitHub calls the account a bot, or its login ends in ``[bot]``."""
        return self.type == "Bot" or self.login.lower().endswith("[bot]")


class App(Slice):
    """A GitHub App (``app`` of a check, ``performed_via_github_app``)."""

    id: int | None = None
    slug: str | None = None
    name: str | None = None

    @property
    def label(self) -> str:
        """The App's slug, else its name, else its id, else ``unknown``."""
        for value in (self.slug, self.name, self.id):
            if value not in (None, ""):
                return str(value)
        return "unknown"


class InstallationRef(Slice):
    """The installation a delivery came through."""

    id: int


class Installation(InstallationRef):
    """An installation of a GitHub App, as installation events show it."""

    account: User | None = None
    suspended_at: str | None = None


class Repository(Slice):
    """The repository an event is about."""

    full_name: str = Field(pattern=r".+/.+")
    id: int | None = None
    default_branch: str | None = None
    private: bool | None = None


class InstallationRepository(Slice):
    """A repository as installation events list it (short form)."""

    id: int | None = None
    full_name: str | None = Field(default=None, pattern=r".+/.+")
    private: bool | None = None


class Label(Slice):
    name: str


class PullLink(Slice):
    """The ``pull_request`` link of an issue that is a pull request."""

    url: str | None = None


class Issue(Slice):
    number: int
    title: str | None = None
    state: str | None = None
    body: str | None = None
    updated_at: str | None = None
    comments_url: str | None = None
    user: User | None = None
    pull_request: PullLink | None = None

    @property
    def is_pull_request(self) -> bool:
        """True for a pull request seen as an issue."""
        return self.pull_request is not None


class CommentBase(Slice):
    """What issue comments and inline review comments share."""

    id: int
    body: str | None = None
    user: User | None = None
    author_association: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class Comment(CommentBase):
    """An issue (or pull-request conversation) comment."""

    performed_via_github_app: App | None = None


class ReviewComment(CommentBase):
    """An inline comment of a pull-request review."""

    in_reply_to_id: int | None = None
    path: str | None = None
    line: int | None = None
    original_line: int | None = None

    @property
    def thread(self) -> int:
        """The id of the thread the comment belongs to: the comment it replies to, else its own."""
        return self.in_reply_to_id or self.id


class Review(Slice):
    """A pull-request review."""

    id: int | None = None
    state: str | None = None
    body: str | None = None
    user: User | None = None
    author_association: str | None = None


class BranchRepository(Slice):
    """The repository a pull request's head lives in (a fork's, for forks)."""

    full_name: str | None = None
    id: int | None = None


class BranchRef(Slice):
    """A branch and its commit, as check runs and suites list pull requests."""

    ref: str | None = None
    sha: str | None = None


class Branch(BranchRef):
    """One side of a pull request (``head`` or ``base``)."""

    repo: BranchRepository | None = None


class PullRequestSummary(Slice):
    """A pull request as review events show it."""

    number: int
    state: str | None = None
    title: str | None = None
    body: str | None = None
    user: User | None = None
    head: Branch | None = None
    base: Branch | None = None
    updated_at: str | None = None


class PullRequest(PullRequestSummary):
    """A pull request as ``pull_request`` events show it."""

    merged: bool | None = None


class PullRequestRef(Slice):
    """A pull request as a check run or suite lists it."""

    number: int
    head: BranchRef | None = None
    base: BranchRef | None = None


class CheckOutput(Slice):
    title: str | None = None
    summary: str | None = None


class SuiteRef(Slice):
    """The check suite a check run belongs to (only ``id`` in REST answers)."""

    id: int | None = None
    head_sha: str | None = None
    status: str | None = None
    conclusion: str | None = None
    app: App | None = None
    updated_at: str | None = None


class CheckRun(Slice):
    id: int
    head_sha: str = Field(min_length=1)
    name: str | None = None
    status: str | None = None
    conclusion: str | None = None
    external_id: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    app: App | None = None
    check_suite: SuiteRef | None = None
    output: CheckOutput | None = None
    pull_requests: tuple[PullRequestRef, ...] = Field(default=(), strict=False)


class CheckSuite(Slice):
    id: int
    head_sha: str = Field(min_length=1)
    head_branch: str | None = None
    status: str | None = None
    conclusion: str | None = None
    app: App | None = None
    latest_check_runs_count: int | None = None
    updated_at: str | None = None
    pull_requests: tuple[PullRequestRef, ...] = Field(default=(), strict=False)


class CommitStatus(Slice):
    """A commit status (an item of a status listing; the ``status`` event adds ``sha``)."""

    state: str | None = None
    context: str | None = None
    description: str | None = None
    updated_at: str | None = None


class RequestedAction(Slice):
    identifier: str = ""


class BodyChange(Slice):
    from_: str | None = Field(default=None, alias="from")


class Changes(Slice):
    """What an ``edited`` action changed (the previous values)."""

    body: BodyChange | None = None

    @property
    def previous_body(self) -> str | None:
        return self.body.from_ if self.body is not None else None


# Events ------------------------------------------------------------------------------

class WebhookEvent(Slice):
    """Fields every event carries; subclasses add their own (``action`` where the event has one)."""

    sender: User | None = None

    @classmethod
    def from_event(cls, event: sansio.Event) -> Self:
        """Parse a gidgethub event's payload; raises BadPayload naming the event and field."""
        return parse_payload(cls, event.event, event.data)


class RepositoryEvent(WebhookEvent):
    """An event about something in one repository."""

    repository: Repository
    installation: InstallationRef | None = None

    @property
    def repo(self) -> str:
        """The repository's ``owner/name``."""
        return self.repository.full_name

    @property
    def installation_id(self) -> int | None:
        return self.installation.id if self.installation is not None else None


class InstallationEvent(WebhookEvent):
    action: str | None = None
    installation: Installation
    repositories: tuple[InstallationRepository, ...] | None = Field(default=None, strict=False)


class InstallationRepositoriesEvent(WebhookEvent):
    action: str | None = None
    installation: Installation
    repositories_added: tuple[InstallationRepository, ...] = Field(default=(), strict=False)
    repositories_removed: tuple[InstallationRepository, ...] = Field(default=(), strict=False)


class IssuesEvent(RepositoryEvent):
    action: str | None = None
    issue: Issue
    label: Label | None = None
    changes: Changes | None = None


class IssueCommentEvent(RepositoryEvent):
    action: str | None = None
    issue: Issue
    comment: Comment
    changes: Changes | None = None


class PullRequestEvent(RepositoryEvent):
    action: str | None = None
    pull_request: PullRequest


class PullRequestReviewEvent(RepositoryEvent):
    action: str | None = None
    pull_request: PullRequestSummary
    review: Review


class PullRequestReviewCommentEvent(RepositoryEvent):
    action: str | None = None
    pull_request: PullRequestSummary
    comment: ReviewComment


class CheckRunEvent(RepositoryEvent):
    action: str | None = None
    check_run: CheckRun
    requested_action: RequestedAction | None = None


class CheckSuiteEvent(RepositoryEvent):
    action: str | None = None
    check_suite: CheckSuite


class StatusEvent(RepositoryEvent):
    sha: str = Field(min_length=1)
    state: str | None = None
    context: str | None = None
    description: str | None = None
    updated_at: str | None = None

    @property
    def status(self) -> CommitStatus:
        """The commit status this event reports."""
        return CommitStatus(state=self.state, context=self.context, description=self.description,
                            updated_at=self.updated_at)


EVENT_MODELS: Mapping[str, type[WebhookEvent]] = {
    "installation": InstallationEvent,
    "installation_repositories": InstallationRepositoriesEvent,
    "issues": IssuesEvent,
    "issue_comment": IssueCommentEvent,
    "pull_request": PullRequestEvent,
    "pull_request_review": PullRequestReviewEvent,
    "pull_request_review_comment": PullRequestReviewCommentEvent,
    "check_run": CheckRunEvent,
    "check_suite": CheckSuiteEvent,
    "status": StatusEvent,
}


# Parsing -----------------------------------------------------------------------------

_Model = TypeVar("_Model", bound=BaseModel)


def _where(location: tuple[int | str, ...]) -> str:
    parts = [f"[{part}]" if isinstance(part, int) else str(part) for part in location]
    return ".".join(parts).replace(".[", "[") or "(root)"


def parse_payload(model: type[_Model], event: str, payload: object) -> _Model:
    """``payload`` as ``model``; raises BadPayload naming ``event`` and the first field that does not fit."""
    if not isinstance(payload, Mapping):
        raise BadPayload(event, "(root)", "is not an object")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        location = tuple(part for part in first["loc"] if not str(part).startswith("function-"))
        problem = "is missing" if first["type"] == "missing" else f"is invalid: {first['msg']}"
        raise BadPayload(event, _where(location), problem) from None


def parse_event(event: str, payload: object) -> WebhookEvent:
    """The typed event for a delivery of ``event``; BadPayload for an event Agent-Z does not read or a bad payload."""
    model = EVENT_MODELS.get(event)
    if model is None:
        raise BadPayload(event, "(event)", "is not an event Agent-Z reads")
    return parse_payload(model, event, payload)
