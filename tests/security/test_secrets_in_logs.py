"""No secret reaches a log line: webhook secret, App key, App JWT, installation tokens, DB password.

The receiver, the inbox and the GitHub client run for real against a fake GitHub
that misbehaves on purpose (a 5xx, a rejected token, and error bodies that echo
the credentials they were sent), with structlog writing into a buffer.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pytest_aiohttp import AiohttpClient, AiohttpServer
from sqlalchemy import select

from agentz_app.bootstrap import open_database
from agentz_app.config import Settings
from agentz_app.github.app import GitHubApp
from agentz_app.github.signatures import sign
from agentz_app.ingress.inbox import process_pending
from agentz_app.logs import configure_logging
from agentz_app.store.models import Delivery
from agentz_app.store.runs import RunQueue
from agentz_app.web import WEBHOOK_PATH, create_app

pytestmark = pytest.mark.postgres

REPO = "acme/app"
WEBHOOK_SECRET = "whsec-4f9d2c71e0b3a8c6d5e4f3a2b1c0d9e8"
DB_PASSWORD = "pg-Pa55word-7c1e9b"
TOKENS = ["ghs_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8", "ghs_" + "Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2"]


def _private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


class FakeGitHub:
    """Installation tokens, collaborator permissions and comments, with faults that echo credentials."""

    def __init__(self) -> None:
        self.tokens_issued: list[str] = []
        self.authorizations: list[str] = []
        self.permission_calls = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/app/installations/{id}/access_tokens", self.access_token)
        app.router.add_get("/repos/{owner}/{repo}/collaborators/{user}/permission", self.permission)
        app.router.add_post("/repos/{owner}/{repo}/issues/{number}/comments", self.comment)
        return app

    async def access_token(self, request: web.Request) -> web.Response:
        self.authorizations.append(request.headers.get("Authorization", ""))
        token = TOKENS[len(self.tokens_issued) % len(TOKENS)]
        self.tokens_issued.append(token)
        expires = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return web.json_response({"token": token, "expires_at": expires}, status=201)

    async def permission(self, request: web.Request) -> web.Response:
        authorization = request.headers.get("Authorization", "")
        self.authorizations.append(authorization)
        self.permission_calls += 1
        user = request.match_info["user"]
        echo = {"message": f"Bad credentials: {authorization}", "documentation_url": authorization}
        if self.permission_calls == 1:
            return web.json_response(echo, status=401)  # the first token is rejected: refresh and retry
        if self.permission_calls == 2:
            return web.json_response(echo, status=502)  # a transient server error: retried
        if user == "mallory":
            return web.json_response(echo, status=500)  # always failing: the refusal is logged
        role = "write" if user == "alice" else "read"
        return web.json_response({"permission": role, "role_name": role, "user": {"login": user}})

    async def comment(self, request: web.Request) -> web.Response:
        self.authorizations.append(request.headers.get("Authorization", ""))
        return web.json_response({"id": 1, "body": (await request.json())["body"]}, status=201)


@pytest.fixture
def log_buffer() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    configure_logging("json", "debug", stream=buffer)
    yield buffer
    structlog.reset_defaults()


def _comment(body: str, user: str, api_url: str) -> dict[str, Any]:
    return {
        "action": "created",
        "issue": {"number": 7, "title": "Add a flag", "state": "open", "user": {"login": "carol"},
                  "comments_url": f"{api_url}/repos/{REPO}/issues/7/comments"},
        "comment": {"id": int(time.time() * 1000) % 10**9, "body": body, "user": {"login": user, "type": "User"},
                    "performed_via_github_app": None},
        "repository": {"id": 10, "full_name": REPO, "default_branch": "main"},
        "installation": {"id": 5},
        "sender": {"login": user, "type": "User"},
    }


async def test_secrets_never_appear_in_logs(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, postgres_url: str, tmp_path: Path,
    log_buffer: io.StringIO,
) -> None:
    pem = _private_key_pem()
    github = FakeGitHub()
    server = await aiohttp_server(github.app())
    database_url = postgres_url.replace("postgresql://postgres@", f"postgresql://postgres:{DB_PASSWORD}@")
    settings = Settings.load(
        None, database_url=database_url, state_dir=tmp_path / ".agent-z", github_webhook_secret=WEBHOOK_SECRET,
        github_app_id=1, github_private_key=pem, github_api_url=str(server.make_url("")).rstrip("/"),
        log_format="json", log_level="debug",
    )
    db = open_database(settings)  # a real PostgreSQL, connected with the password in its URL
    try:
        client = await aiohttp_client(create_app(settings, db, process_inbox=False))
        for user in ("alice", "eve", "mallory"):
            body = json.dumps(_comment("/agent-z run", user, settings.github_api_url)).encode()
            headers = {"Content-Type": "application/json", "X-GitHub-Event": "issue_comment",
                       "X-GitHub-Delivery": str(uuid.uuid4()), "X-Hub-Signature-256": sign(settings.webhook_secret(),
                                                                                             body)}
            assert (await client.post(WEBHOOK_PATH, data=body, headers=headers)).status == 202
        forged = json.dumps(_comment("/agent-z run", "alice", settings.github_api_url)).encode()
        response = await client.post(WEBHOOK_PATH, data=forged, headers={
            "X-GitHub-Event": "issue_comment", "X-GitHub-Delivery": "forged",
            "X-Hub-Signature-256": sign(b"guess", forged)})
        assert response.status == 401

        async def no_wait(_: float) -> None:
            return None

        async with aiohttp.ClientSession() as session:
            app = GitHubApp(settings, session, sleep=no_wait)
            assert await process_pending(db, settings, github=app) == 3
            assert await app.installation_token(5) in TOKENS

        with db.read() as session_:
            errors = [row.error for row in session_.scalars(select(Delivery)) if row.error]
        run = RunQueue(db).reads.live_run_for_issue(REPO, 7)
    finally:
        db.dispose()

    # The scenario really ran: both tokens and the App JWT were used, one permission lookup failed
    # (refused and logged; the delivery itself succeeds).
    assert run is not None
    assert run.requested_by == "alice"
    assert errors == []
    assert any(auth.startswith("Bearer eyJ") for auth in github.authorizations)
    assert {f"token {token}" for token in TOKENS} <= set(github.authorizations)
    jwts = {auth.removeprefix("Bearer ") for auth in github.authorizations if auth.startswith("Bearer ")}
    text = log_buffer.getvalue()
    assert "github.token_rejected" in text
    assert "github.retry" in text
    assert "permission lookup failed" in text

    pem_lines = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    secrets = [WEBHOOK_SECRET, DB_PASSWORD, database_url, *TOKENS, *jwts, *pem_lines]
    leaked = [secret[:12] + "..." for secret in secrets if secret in text or secret in "\n".join(errors)]
    assert leaked == []
