"""The GitHub App as a whole: JWT, installation tokens and clients built from settings."""

from __future__ import annotations

import re
import time
from typing import Any

import aiohttp

from agentz_app.config import Settings
from agentz_app.errors import ConfigError, GitHubError
from agentz_app.github.auth import AppJWT, InstallationTokens
from agentz_app.github.client import ClientPolicy, Clock, ETagCache, GitHubClient, OnResponse, RequestPacer, Sleep

_FULL_NAME = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


class GitHubApp:
    """Build clients for the configured App; one per process, sharing tokens, ETags and pacing."""

    def __init__(
        self,
        settings: Settings,
        session: aiohttp.ClientSession,
        *,
        etags: ETagCache | None = None,
        on_response: OnResponse | None = None,
        policy: ClientPolicy | None = None,
        sleep: Sleep | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.settings = settings
        self.session = session
        self.etags = etags if etags is not None else ETagCache()
        self.policy = policy or ClientPolicy(retry_attempts=settings.github_retry_attempts)
        self._on_response = on_response
        self._sleep = sleep
        self._clock = clock
        self._jwt: AppJWT | None = None
        self._app_client: GitHubClient | None = None
        self._pacers: dict[int, RequestPacer] = {}
        self._installations: dict[str, int] = {}
        self.tokens = InstallationTokens(self._fetch_token, clock=clock)

    def __repr__(self) -> str:
        return f"GitHubApp(app_id={self.settings.github_app_id}, api={self.settings.github_api_url})"

    def app_jwt(self) -> str:
        """A current App JWT (the private key is read on first use)."""
        if self._jwt is None:
            if self.settings.github_app_id is None:
                raise ConfigError("GITHUB_APP_ID", "required to call GitHub")
            self._jwt = AppJWT(self.settings.github_app_id, self.settings.private_key_pem(), clock=self._clock)
        return self._jwt()

    def _client(self, **kwargs: Any) -> GitHubClient:
        return GitHubClient(
            self.session,
            base_url=self.settings.github_api_url,
            requester=self.settings.github_app_slug,
            app_jwt=self.app_jwt,
            etags=self.etags,
            on_response=self._on_response,
            policy=self.policy,
            sleep=self._sleep,
            clock=self._clock,
            **kwargs,
        )

    def client(self, installation_id: int) -> GitHubClient:
        """A client acting as the installation; no request is made until first use."""
        if installation_id < 1:
            raise ValueError(f"installation id must be positive, got {installation_id}")
        pacer = self._pacers.setdefault(installation_id, RequestPacer())
        return self._client(installation_id=installation_id, tokens=self.tokens, pacer=pacer)

    def app_client(self) -> GitHubClient:
        """A client authenticated as the App itself (JWT), for ``/app/...`` endpoints."""
        if self._app_client is None:
            self._app_client = self._client()
        return self._app_client

    async def installation_token(self, installation_id: int) -> str:
        """A current installation token, e.g. for git's credential helper; never log it."""
        return await self.tokens.get(installation_id)

    async def installation_for_repo(self, full_name: str) -> int:
        """The id of the App's installation on ``owner/repo``; GitHubError 404 if not installed."""
        if not _FULL_NAME.match(full_name):
            raise ValueError(f"repository must look like owner/name, got {full_name!r}")
        owner, repo = full_name.split("/", 1)
        data = await self.app_client().getitem("/repos/{owner}/{repo}/installation", {"owner": owner, "repo": repo})
        installation_id = data.get("id") if isinstance(data, dict) else None
        if not isinstance(installation_id, int) or isinstance(installation_id, bool) or installation_id < 1:
            raise GitHubError(200, f"installation response for {full_name} has no valid id", body=data)
        return installation_id

    async def client_for_repo(self, full_name: str) -> GitHubClient:
        """A client for the installation on ``owner/repo``, looking the installation up once."""
        key = full_name.lower()
        installation_id = self._installations.get(key)
        if installation_id is None:
            installation_id = await self.installation_for_repo(full_name)
            self._installations[key] = installation_id
        return self.client(installation_id)

    async def list_installations(self) -> list[dict[str, Any]]:
        """Every installation of the App (``GET /app/installations``, all pages, ETag-cached)."""
        return [item async for item in self.app_client().getiter("/app/installations?per_page=100")
                if isinstance(item, dict)]

    async def installation_repositories(self, installation_id: int) -> list[dict[str, Any]]:
        """The repositories an installation can reach (``GET /installation/repositories``, all pages)."""
        gh = self.client(installation_id)
        return [item async for item in gh.getiter("/installation/repositories?per_page=100",
                                                  iterable_key="repositories")
                if isinstance(item, dict)]

    async def _fetch_token(self, installation_id: int) -> Any:
        return await self.app_client().post(
            "/app/installations/{installation_id}/access_tokens",
            {"installation_id": installation_id},
            data={},
        )
