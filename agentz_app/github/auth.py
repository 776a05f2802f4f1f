"""GitHub App authentication: App JWTs and the per-installation token cache.

Tokens are secrets: nothing here logs them, and their ``repr`` hides them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from agentz_app.errors import ConfigError, GitHubError

JWT_BACKDATE_SECONDS = 60
"""``iat`` is set this far in the past to allow for clock drift."""
JWT_LIFETIME_SECONDS = 540
"""``exp`` is this far ahead of now: GitHub allows at most ten minutes."""
JWT_REUSE_SECONDS = 300
"""A cached App JWT is reused for this long, well inside its lifetime."""
TOKEN_REFRESH_MARGIN_SECONDS = 300
"""An installation token is refreshed this long before it expires."""

Clock = Callable[[], float]
TokenFetcher = Callable[[int], Awaitable[Any]]
"""Request a new installation token: takes the installation id, returns GitHub's JSON answer."""


def load_private_key(private_key_pem: str) -> RSAPrivateKey:
    """Parse the App's PEM private key, failing with a ConfigError naming the variable."""
    try:
        key = load_pem_private_key(private_key_pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError("GITHUB_PRIVATE_KEY", f"not a readable PEM private key ({type(exc).__name__})") from None
    if not isinstance(key, RSAPrivateKey):
        raise ConfigError("GITHUB_PRIVATE_KEY", "must be an RSA private key")
    return key


def _jwt_claims(app_id: int, now: float) -> dict[str, Any]:
    issued = int(now)
    return {"iat": issued - JWT_BACKDATE_SECONDS, "exp": issued + JWT_LIFETIME_SECONDS, "iss": str(app_id)}


def make_app_jwt(app_id: int, private_key_pem: str, *, now: float | None = None) -> str:
    """Sign an RS256 App JWT: ``iat`` 60 s in the past, ``exp`` 9 minutes ahead, ``iss`` the App id."""
    if app_id < 1:
        raise ConfigError("GITHUB_APP_ID", "must be a positive integer")
    key = load_private_key(private_key_pem)
    return jwt.encode(_jwt_claims(app_id, time.time() if now is None else now), key, algorithm="RS256")


class AppJWT:
    """Issue App JWTs, reusing one for a few minutes instead of signing per request."""

    def __init__(self, app_id: int, private_key_pem: str, *, clock: Clock = time.time) -> None:
        if app_id < 1:
            raise ConfigError("GITHUB_APP_ID", "must be a positive integer")
        self.app_id = app_id
        self._key = load_private_key(private_key_pem)
        self._clock = clock
        self._token: str | None = None
        self._issued_at = 0.0

    def __repr__(self) -> str:
        return f"AppJWT(app_id={self.app_id})"

    def __call__(self) -> str:
        """Return a valid App JWT, signing a new one when the cached one is old."""
        now = self._clock()
        if self._token is None or not (0 <= now - self._issued_at < JWT_REUSE_SECONDS):
            self._token = jwt.encode(_jwt_claims(self.app_id, now), self._key, algorithm="RS256")
            self._issued_at = now
        return self._token


@dataclass(frozen=True)
class InstallationToken:
    """An installation access token and when it expires (epoch seconds)."""

    token: str = field(repr=False)
    expires_at: float


def parse_token_response(data: object, *, status: int = 201) -> InstallationToken:
    """Validate GitHub's answer to ``POST /app/installations/{id}/access_tokens``."""
    if not isinstance(data, Mapping):
        raise GitHubError(status, "installation token response is not a JSON object")
    token = data.get("token")
    if not isinstance(token, str) or not token.strip():
        raise GitHubError(status, "installation token response has no token")
    expires = data.get("expires_at")
    if not isinstance(expires, str):
        raise GitHubError(status, "installation token response has no expires_at")
    try:
        moment = datetime.fromisoformat(expires)
    except ValueError:
        raise GitHubError(status, f"installation token expires_at is not a timestamp: {expires[:40]!r}") from None
    if moment.tzinfo is None:
        raise GitHubError(status, "installation token expires_at has no time zone")
    return InstallationToken(token=token, expires_at=moment.timestamp())


class InstallationTokens:
    """Per-installation token cache: refreshed early, one refresh in flight per installation."""

    def __init__(
        self,
        fetch: TokenFetcher,
        *,
        clock: Clock = time.time,
        refresh_margin: float = TOKEN_REFRESH_MARGIN_SECONDS,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._margin = refresh_margin
        self._tokens: dict[int, InstallationToken] = {}
        self._locks: dict[int, asyncio.Lock] = {}

    def __repr__(self) -> str:
        return f"InstallationTokens(cached={sorted(self._tokens)})"

    def _fresh(self, installation_id: int) -> InstallationToken | None:
        cached = self._tokens.get(installation_id)
        if cached is not None and cached.expires_at - self._margin > self._clock():
            return cached
        return None

    async def get(self, installation_id: int) -> str:
        """Return a usable token for the installation, fetching one if needed."""
        return (await self.get_token(installation_id)).token

    async def get_token(self, installation_id: int) -> InstallationToken:
        """Like :meth:`get`, with the expiry time."""
        if installation_id < 1:
            raise ValueError(f"installation id must be positive, got {installation_id}")
        cached = self._fresh(installation_id)
        if cached is not None:
            return cached
        lock = self._locks.setdefault(installation_id, asyncio.Lock())
        async with lock:
            cached = self._fresh(installation_id)
            if cached is not None:
                return cached
            fresh = parse_token_response(await self._fetch(installation_id))
            self._tokens[installation_id] = fresh
            return fresh

    def invalidate(self, installation_id: int, token: str | None = None) -> None:
        """Forget the cached token (only if it is still ``token``, when given), e.g. after a 401."""
        cached = self._tokens.get(installation_id)
        if cached is not None and (token is None or cached.token == token):
            del self._tokens[installation_id]
