"""The permission rule: who may create, change or feed a run.

One rule on every path (labels, slash commands, check-run buttons, review feedback,
adopted pull requests, auto-mode scheduling): a person with write, maintain or admin
permission on the repository, or Agent-Z's own App. Other Apps and bots pass only when
listed in ``TRUSTED_BOTS``; GitHub's collaborator-permission endpoint does not answer
for bot logins, so a bot is never looked up.

:func:`may_steer` is the pure decision. :func:`check_actor` adds the look-up: answers
are stored in ``actor_permissions`` and reused for :data:`PERMISSION_TTL_SECONDS`, so a
burst costs one request and a revoked permission counts within a minute. Any error
while asking GitHub refuses (fail closed) and is not remembered. :func:`stored_decision`
is the same rule over the stored answers only, for the reconciler and the scheduler,
which never call GitHub themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from gidgethub.abc import GitHubAPI
from sqlalchemy.orm import Session

from agentz_app.config import Settings
from agentz_app.github.events import User
from agentz_app.logs import get_logger
from agentz_app.store import trust
from agentz_app.store.db import Database
from agentz_app.store.models import ActorPermission, now

log = get_logger(__name__)

PERMISSION_TTL_SECONDS = 60.0
WRITE_ROLES = frozenset({"admin", "maintain", "write"})
WRITE_PERMISSIONS = frozenset({"admin", "write"})  # the legacy field maps maintain to write

# Reasons a decision gives (recorded in events and verdicts).
OWN_APP = "our own App"
TRUSTED_BOT = "listed in TRUSTED_BOTS"
UNTRUSTED_BOT = "a bot not listed in TRUSTED_BOTS"
WRITE_ACCESS = "write access"
NO_WRITE_ACCESS = "no write access"
UNKNOWN_PERMISSION = "permission not known yet"
LOOKUP_FAILED = "permission lookup failed"
NO_LOGIN = "no login"

Clock = Callable[[], float]


@dataclass(frozen=True)
class Actor:
    """Who did something on GitHub: a login, and whether GitHub calls it a bot."""

    login: str
    bot: bool = False

    @classmethod
    def of(cls, user: User | None) -> Actor:
        """The actor of a parsed payload user (``sender``, ``comment.user`` …); None is nobody."""
        return cls("") if user is None else cls(user.login, bot=user.is_bot)

    @classmethod
    def from_login(cls, login: str) -> Actor:
        """An actor known by login only (a stored author): ``[bot]`` logins are bots."""
        return cls(login, bot=login.lower().endswith("[bot]"))


@dataclass(frozen=True)
class Permission:
    """GitHub's answer to "what may this person do here?"."""

    permission: str | None
    role_name: str | None = None

    @property
    def grants_write(self) -> bool:
        """True for write, maintain, admin, and custom roles based on write or admin."""
        return self.role_name in WRITE_ROLES or self.permission in WRITE_PERMISSIONS

    @property
    def name(self) -> str | None:
        """The role to show a person (``triage`` rather than the legacy ``read``)."""
        return self.role_name or self.permission

    @classmethod
    def from_answer(cls, answer: Mapping[str, Any]) -> Permission:
        """Read GitHub's collaborator-permission answer."""
        permission, role = answer.get("permission"), answer.get("role_name")
        return cls(permission if isinstance(permission, str) else None, role if isinstance(role, str) else None)


@dataclass(frozen=True)
class TrustPolicy:
    """The configuration the rule needs: our App's bot login and the bots trusted by name."""

    own_login: str
    trusted_bots: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls, settings: Settings) -> TrustPolicy:
        return cls(f"{settings.github_app_slug}[bot]".lower(), frozenset(b.lower() for b in settings.trusted_bots))

    def is_own(self, actor: Actor) -> bool:
        """True for Agent-Z's own App."""
        return actor.login.lower() == self.own_login

    def needs_lookup(self, actor: Actor) -> bool:
        """True when only GitHub's permission answer can decide (a person)."""
        return bool(actor.login) and not actor.bot and not self.is_own(actor)


@dataclass(frozen=True)
class Decision:
    """Whether an actor may steer, and why (for events, replies and verdicts)."""

    allowed: bool
    reason: str
    permission: Permission | None = None

    @property
    def lookup_failed(self) -> bool:
        return self.reason == LOOKUP_FAILED


def may_steer(actor: Actor, permission: Permission | None, policy: TrustPolicy) -> bool:
    """The rule: write/maintain/admin, or our own App, or a bot listed in TRUSTED_BOTS."""
    return decide(actor, permission, policy).allowed


def decide(actor: Actor, permission: Permission | None, policy: TrustPolicy) -> Decision:
    """:func:`may_steer` with its reason (pure)."""
    login = actor.login.lower()
    if not login:
        return Decision(False, NO_LOGIN)
    if policy.is_own(actor):
        return Decision(True, OWN_APP)
    if actor.bot:
        return Decision(True, TRUSTED_BOT) if login in policy.trusted_bots else Decision(False, UNTRUSTED_BOT)
    if permission is None:
        return Decision(False, UNKNOWN_PERMISSION)
    if permission.grants_write:
        return Decision(True, WRITE_ACCESS, permission)
    return Decision(False, NO_WRITE_ACCESS, permission)


def permission_url(repo: str, login: str) -> str:
    """GitHub's collaborator-permission endpoint for ``login`` on ``repo``."""
    return f"/repos/{repo}/collaborators/{quote(login, safe='')}/permission"


def _from_row(row: ActorPermission) -> Permission:
    return Permission(row.permission, row.role_name)


def _fresh_permission(db: Database, repo: str, login: str, *, younger_than: float, clock: Clock) -> Permission | None:
    with db.read() as session:
        row = trust.stored_permission(session, repo, login)
        return _from_row(row) if row is not None and clock() - row.checked_at < younger_than else None


async def fetch_permission(gh: GitHubAPI | None, db: Database, repo: str, login: str, *,
                           ttl: float = PERMISSION_TTL_SECONDS, clock: Clock = now) -> Permission:
    """``login``'s permission on ``repo``: the stored answer when younger than ``ttl``, else GitHub's.

    Raises whatever the request raises; the caller decides (see :func:`check_actor`).
    """
    fresh = await db.run(_fresh_permission, db, repo, login, younger_than=ttl, clock=clock)
    if fresh is not None:
        return fresh
    if gh is None:
        raise LookupError("no GitHub client to ask")
    answer = await gh.getitem(permission_url(repo, login))
    if not isinstance(answer, Mapping):
        raise TypeError(f"unreadable permission answer for {login} on {repo}")
    permission = Permission.from_answer(answer)
    await db.run(trust.save_permission, db, repo, login, permission=permission.permission,
                 role_name=permission.role_name, at=clock())
    return permission


async def check_actor(gh: GitHubAPI | None, db: Database, settings: Settings, repo: str, actor: Actor, *,
                      ttl: float = PERMISSION_TTL_SECONDS, clock: Clock = now) -> Decision:
    """Apply the rule to ``actor``, asking GitHub when needed; never raises for a failed look-up."""
    policy = TrustPolicy.from_settings(settings)
    if not policy.needs_lookup(actor):
        return decide(actor, None, policy)
    try:
        permission = await fetch_permission(gh, db, repo, actor.login, ttl=ttl, clock=clock)
    except Exception as exc:  # noqa: BLE001 - fail closed: whatever the look-up raises refuses, and nothing is remembered
        log.warning("permission lookup failed", repo=repo, user=actor.login, error=f"{type(exc).__name__}: {exc}")
        return Decision(False, LOOKUP_FAILED)
    return decide(actor, permission, policy)


def stored_decision(session: Session, settings: Settings, repo: str, actor: Actor, *,
                    max_age: float | None = None, at: float | None = None) -> Decision:
    """The rule over the stored answer only (no GitHub): unknown or older than ``max_age`` refuses."""
    policy = TrustPolicy.from_settings(settings)
    if not policy.needs_lookup(actor):
        return decide(actor, None, policy)
    row = trust.stored_permission(session, repo, actor.login)
    moment = now() if at is None else at
    if row is None or (max_age is not None and moment - row.checked_at >= max_age):
        return Decision(False, UNKNOWN_PERMISSION)
    return decide(actor, _from_row(row), policy)
