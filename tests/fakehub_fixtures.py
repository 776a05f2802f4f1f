"""Pytest fixtures around the fake GitHub: a started ``fakehub``, a webhook sink, App credentials.

Use with ``pytest_plugins = ["tests.fakehub_fixtures"]`` or import the fixtures directly.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
import yaml
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from agentz_app.fakehub import FakeHub
from tests.contract.validator import ContractRecorder, GitHubContract
from tests.waiting import wait_for

APP_MANIFEST = Path(__file__).resolve().parent.parent / "app-manifest.yml"
WEBHOOK_SECRET = "fakehub-test-secret"
APP_ID = 4242
APP_SLUG = "agent-z-test"


@dataclass
class Delivery:
    """One webhook request the sink received."""

    event: str
    guid: str
    action: str | None
    payload: dict[str, Any]
    headers: dict[str, str]
    body: bytes
    signature_ok: bool


@dataclass
class WebhookSink:
    """A real aiohttp receiver that records deliveries and checks their HMAC signature."""

    secret: str
    deliveries: list[Delivery] = field(default_factory=list)
    fail_next: int = 0
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> str:
        """Listen on 127.0.0.1 and return the webhook URL."""
        app = web.Application()
        app.router.add_post("/webhooks", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/webhooks"
        return self.url

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=503)
        expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        ok = hmac.compare_digest(expected, request.headers.get("X-Hub-Signature-256", ""))
        payload = json.loads(body)
        self.deliveries.append(Delivery(request.headers["X-GitHub-Event"], request.headers["X-GitHub-Delivery"],
                                        payload.get("action"), payload, dict(request.headers), body, ok))
        return web.Response(status=202 if ok else 401)

    def of(self, event: str, action: str | None = None) -> list[Delivery]:
        """Deliveries of one event (and action)."""
        return [d for d in self.deliveries if d.event == event and (action is None or d.action == action)]

    async def wait_for(self, event: str, action: str | None = None, *,
                       where: Callable[[Delivery], bool] = lambda d: True) -> Delivery:
        """Wait (up to 30 seconds) until a matching delivery arrives and return it."""
        try:
            return await wait_for(lambda: next((d for d in self.of(event, action) if where(d)), None),
                                  timeout=30.0, what=f"a {event}.{action} delivery")
        except AssertionError as exc:
            seen = [(d.event, d.action) for d in self.deliveries]
            raise AssertionError(f"{exc}; got {seen}") from None


def make_private_key() -> str:
    """A fresh RSA private key in PEM form."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode()


def app_jwt(private_key_pem: str, app_id: int = APP_ID) -> str:
    """An App JWT (RS256, iat -60 s, exp +9 min)."""
    now = int(time.time())
    return jwt.encode({"iat": now - 60, "exp": now + 540, "iss": str(app_id)}, private_key_pem, algorithm="RS256")


async def installation_token(session: aiohttp.ClientSession, hub: FakeHub, private_key_pem: str,
                             full_name: str) -> str:
    """Mint an installation token for the installation covering ``full_name``."""
    headers = {"Authorization": f"Bearer {app_jwt(private_key_pem, hub.app.id)}"}
    async with session.get(f"{hub.api_url}/repos/{full_name}/installation", headers=headers) as response:
        assert response.status == 200, await response.text()
        installation_id = (await response.json())["id"]
    async with session.post(f"{hub.api_url}/app/installations/{installation_id}/access_tokens",
                            headers=headers) as response:
        assert response.status == 201, await response.text()
        token: str = (await response.json())["token"]
    return token


@pytest.fixture(scope="session")
def app_private_key() -> str:
    """The test App's private key."""
    return make_private_key()


@pytest.fixture
async def webhook_sink() -> AsyncIterator[WebhookSink]:
    """A started webhook receiver verifying signatures with ``WEBHOOK_SECRET``."""
    sink = WebhookSink(WEBHOOK_SECRET)
    await sink.start()
    yield sink
    await sink.stop()


def contract_recorder(hub: FakeHub) -> ContractRecorder:
    """The recorder validating ``hub``'s traffic (registered by the ``fakehub`` fixture)."""
    return next(o for o in hub.observers if isinstance(o, ContractRecorder))


@pytest.fixture
async def fakehub(tmp_path: Path, webhook_sink: WebhookSink, app_private_key: str) -> AsyncIterator[FakeHub]:
    """A started FakeHub sending webhooks to ``webhook_sink`` and verifying App JWTs.

    Every request, response and webhook is validated against GitHub's description; the
    test fails at teardown if any departed from it.
    """
    hub = FakeHub(tmp_path / "fakehub", webhook_url=webhook_sink.url, webhook_secret=WEBHOOK_SECRET, app_id=APP_ID,
                  app_slug=APP_SLUG, private_key_pem=app_private_key, webhook_backoff_seconds=0.02,
                  app_manifest=yaml.safe_load(APP_MANIFEST.read_text("utf-8")))
    recorder = ContractRecorder(GitHubContract.load())
    hub.observers.append(recorder)
    await hub.start()
    yield hub
    await hub.stop()
    assert not recorder.violations, "traffic departs from GitHub's description:\n" + recorder.report()


GIT_ENV = {"GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@example.invalid", "GIT_COMMITTER_NAME": "Dev",
           "GIT_COMMITTER_EMAIL": "dev@example.invalid"}


async def run_git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    """Run git asynchronously (the push hook calls back into the same event loop) and return stdout."""
    import os

    proc = await asyncio.create_subprocess_exec(
        "git", *args, cwd=cwd, env={**os.environ, **GIT_ENV, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {err.decode()}")
    return out.decode().strip()


async def clone(hub: FakeHub, full_name: str, dest: Path) -> Path:
    """Clone a fake repository through its ``git_url_template`` URL."""
    await run_git("clone", "-q", hub.git_url_template.format(full_name=full_name), str(dest))
    return dest


async def push_branch(hub: FakeHub, workdir: Path, branch: str, files: dict[str, str], *,
                      full_name: str = "acme/widgets", base: str = "main", message: str = "Change files",
                      pusher: str | None = None) -> str:
    """Commit ``files`` on ``branch`` (from ``base``, or the branch if it exists) and push; return the SHA."""
    dest = workdir / f"clone-{branch.replace('/', '-')}"
    if not dest.exists():
        await clone(hub, full_name, dest)
        remote_branches = await run_git("branch", "-r", cwd=dest)
        start = f"origin/{branch}" if f"origin/{branch}" in remote_branches.split() else f"origin/{base}"
        await run_git("checkout", "-q", "-b", branch, start, cwd=dest)
    for rel, content in files.items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, "utf-8")
    await run_git("add", "-A", cwd=dest)
    await run_git("commit", "-q", "-m", message, cwd=dest)
    await run_git("push", "-q", "origin", f"HEAD:refs/heads/{branch}", cwd=dest,
                  env={"FAKEHUB_PUSHER": pusher} if pusher else None)
    return await run_git("rev-parse", "HEAD", cwd=dest)
