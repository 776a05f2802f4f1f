"""``agentz setup``'s App manifest flow, driven end to end over real local HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import os
import re
import socket
import stat
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import ClientSession, web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pytest_aiohttp import AiohttpServer

from agentz_app.config import Settings
from agentz_app.fakehub import FakeHub
from agentz_app.setup import (
    GitHubUnreachable,
    SetupError,
    SetupOptions,
    api_url_for,
    build_manifest,
    load_manifest,
    run_setup,
    update_env_text,
)
from tests.fakehub_fixtures import app_jwt

MANIFEST = Path(__file__).resolve().parents[2] / "app-manifest.yml"
WEBHOOK_URL = "https://hooks.example.test/api/github/webhooks"


def _pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _conversions_app(pem: str, seen: list[str], status: int = 201) -> web.Application:
    """A stand-in for GitHub's ``POST /app-manifests/{code}/conversions``."""

    async def convert(request: web.Request) -> web.Response:
        seen.append(request.match_info["code"])
        if status != 201:
            return web.json_response({"message": "Not Found"}, status=status)
        return web.json_response({
            "id": 4242, "slug": "agent-z-test", "name": "Agent-Z test", "pem": pem,
            "webhook_secret": "whsec-0123456789abcdef", "client_id": "Iv1.x", "client_secret": "cs",
            "html_url": "https://github.example/apps/agent-z-test",
        }, status=201)

    app = web.Application()
    app.router.add_post("/app-manifests/{code}/conversions", convert)
    return app


async def _start(options: SetupOptions) -> tuple[asyncio.Task[Any], str]:
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run_setup(options, on_ready=ready.set_result))
    return task, await asyncio.wait_for(ready, 10)


async def _form(session: ClientSession, url: str) -> tuple[str, dict[str, Any]]:
    async with session.get(url) as response:
        assert response.status == 200
        page = await response.text()
    action = re.search(r"action='([^']*)'", page)
    value = re.search(r"name='manifest' value='([^']*)'", page)
    assert action is not None
    assert value is not None
    return html.unescape(action.group(1)), json.loads(html.unescape(value.group(1)))


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_manifest_flow_writes_the_app_credentials_to_env_and_key_file(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    pem = _pem()
    seen: list[str] = []
    github_api = await aiohttp_server(_conversions_app(pem, seen))
    env_file = tmp_path / ".env"
    env_file.write_text("# mine\nDATABASE_URL=sqlite:///x.db\nGITHUB_APP_ID=          # numeric App id\n")
    options = SetupOptions(webhook_url=WEBHOOK_URL, github_url="https://github.example",
                           api_url=str(github_api.make_url("")), port=0, env_file=env_file,
                           state_dir=tmp_path / ".agent-z", manifest_path=MANIFEST)
    task, url = await _start(options)
    assert url.startswith("http://127.0.0.1:")

    async with ClientSession() as session:
        action, manifest = await _form(session, url)
        assert action.startswith("https://github.example/settings/apps/new?state=")
        assert manifest["hook_attributes"]["url"] == WEBHOOK_URL
        assert manifest["redirect_url"] == url + "redirect"
        assert manifest["public"] is False
        assert {"issues", "issue_comment", "pull_request", "check_suite", "status"} <= set(manifest["default_events"])
        assert manifest["default_permissions"]["contents"] == "write"
        state = parse_qs(urlsplit(action).query)["state"][0]

        # GitHub sends the browser back with a code and our state.
        async with session.get(manifest["redirect_url"], params={"code": "abc123", "state": "forged"}) as response:
            assert response.status == 400
        async with session.get(manifest["redirect_url"], params={"code": "abc123", "state": state}) as response:
            assert response.status == 200
            assert "agent-z-test" in await response.text()

    result = await asyncio.wait_for(task, 10)
    assert seen == ["abc123"]
    key_path = tmp_path / ".agent-z" / "agent-z-test.private-key.pem"
    assert result.key_path == key_path
    assert key_path.read_text() == pem
    assert _mode(key_path) == 0o600
    assert _mode(env_file) == 0o600
    text = env_file.read_text()
    assert text.startswith("# mine\nDATABASE_URL=sqlite:///x.db\nGITHUB_APP_ID=4242\n")
    assert "GITHUB_APP_SLUG=agent-z-test\n" in text
    assert "GITHUB_WEBHOOK_SECRET=whsec-0123456789abcdef\n" in text
    assert f"GITHUB_PRIVATE_KEY_PATH={key_path}\n" in text
    settings = Settings.load(env_file)
    assert settings.github_app_id == 4242
    assert settings.webhook_secret() == b"whsec-0123456789abcdef"
    assert settings.private_key_pem() == pem


async def test_organisation_apps_post_to_the_organisation_page(tmp_path: Path, aiohttp_server: AiohttpServer) -> None:
    github_api = await aiohttp_server(_conversions_app("", []))
    options = SetupOptions(webhook_url=WEBHOOK_URL, github_url="https://github.example", org="octo-org",
                           api_url=str(github_api.make_url("")), port=0, env_file=tmp_path / ".env",
                           manifest_path=MANIFEST)
    task, url = await _start(options)
    async with ClientSession() as session:
        action, _ = await _form(session, url)
    await _cancel(task)
    assert action.startswith("https://github.example/organizations/octo-org/settings/apps/new?state=")


async def test_a_refused_code_shows_an_error_and_writes_nothing(tmp_path: Path, aiohttp_server: AiohttpServer) -> None:
    github_api = await aiohttp_server(_conversions_app("", [], status=404))
    env_file = tmp_path / ".env"
    options = SetupOptions(webhook_url=WEBHOOK_URL, api_url=str(github_api.make_url("")), port=0,
                           env_file=env_file, state_dir=tmp_path / "state", manifest_path=MANIFEST)
    task, url = await _start(options)
    async with ClientSession() as session:
        action, manifest = await _form(session, url)
        state = parse_qs(urlsplit(action).query)["state"][0]
        async with session.get(manifest["redirect_url"], params={"code": "zzz", "state": state}) as response:
            assert response.status == 502
            assert "404" in await response.text()
    assert not task.done()
    await _cancel(task)
    assert not env_file.exists()
    assert not (tmp_path / "state").exists()


def test_env_update_replaces_keys_keeps_other_lines_and_quotes_odd_values() -> None:
    text = "A=1\nexport GITHUB_APP_ID=7\n# c\nGITHUB_APP_ID=8\n"
    assert update_env_text(text, {"GITHUB_APP_ID": "9", "X": "a b"}) == 'A=1\nGITHUB_APP_ID=9\n# c\n\nX="a b"\n'
    assert update_env_text("", {"K": "v"}) == "K=v\n"


def test_manifest_urls_must_be_http(tmp_path: Path) -> None:
    with pytest.raises(SetupError, match="webhook URL"):
        build_manifest({"name": "x"}, webhook_url="ftp://x", redirect_url="http://127.0.0.1/redirect")


# End to end against fakehub, which converts a posted manifest into a new App as GitHub does.

GHES = "https://ghe.example.test"


async def _create_app_on_fakehub(session: ClientSession, hub: FakeHub, page_url: str) -> None:
    """What the browser and GitHub do: fetch the form, post the manifest, follow the redirect back."""
    action, manifest = await _form(session, page_url)
    state = parse_qs(urlsplit(action).query)["state"][0]
    async with session.post(f"{hub.api_url}/_fakehub/app-manifests", json={"manifest": manifest}) as response:
        assert response.status == 201
        code = (await response.json())["code"]
    async with session.get(manifest["redirect_url"], params={"code": code, "state": state}) as response:
        assert response.status == 200, await response.text()


async def _authenticates(session: ClientSession, settings: Settings) -> dict[str, Any]:
    assert settings.github_app_id is not None
    token = app_jwt(settings.private_key_pem(), settings.github_app_id)
    async with session.get(f"{settings.github_api_url}/app", headers={"Authorization": f"Bearer {token}"}) as response:
        assert response.status == 200, await response.text()
        app: dict[str, Any] = await response.json()
        return app


async def test_setup_registers_the_packaged_manifest_with_fakehub_and_the_credentials_work(tmp_path: Path) -> None:
    hub = FakeHub(tmp_path / "github")
    await hub.start()
    env_file = tmp_path / "elsewhere" / ".env"
    env_file.parent.mkdir()
    steps: list[str] = []
    options = SetupOptions(webhook_url=WEBHOOK_URL, github_url=GHES, api_url=hub.api_url, port=0, env_file=env_file,
                           state_dir=tmp_path / "state")
    try:
        ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(run_setup(options, on_ready=ready.set_result, on_step=steps.append))
        page = await asyncio.wait_for(ready, 10)
        async with ClientSession() as session:
            await _create_app_on_fakehub(session, hub, page)
            result = await asyncio.wait_for(task, 10)
            settings = Settings.load(env_file)
            app = await _authenticates(session, settings)
    finally:
        await hub.stop()
    assert app["id"] == result.credentials.app_id == settings.github_app_id
    assert app["slug"] == result.credentials.slug == settings.github_app_slug
    assert settings.webhook_secret() == result.credentials.webhook_secret.encode()
    # GitHub Enterprise Server: the API and clone addresses go to .env with the credentials.
    assert settings.github_api_url == hub.api_url.rstrip("/")
    assert settings.git_url_template == f"{GHES}/{{full_name}}.git"
    assert _mode(result.key_path) == 0o600
    assert result.key_path.is_absolute()
    assert [step.split(" ")[0] for step in steps] == ["checking", "the", "GitHub", "GitHub"]


async def test_unreachable_github_fails_at_once_with_the_reason(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    pages: list[str] = []
    options = SetupOptions(webhook_url=WEBHOOK_URL, api_url=f"http://127.0.0.1:{closed_port}", port=0,
                           env_file=tmp_path / ".env", state_dir=tmp_path / "state")
    reason = f"cannot reach GitHub at http://127.0.0.1:{closed_port}: .*(refused|failed)"
    with pytest.raises(GitHubUnreachable, match=reason):
        await asyncio.wait_for(run_setup(options, on_ready=pages.append), 15)
    assert pages == []
    assert not (tmp_path / ".env").exists()


async def test_github_going_away_during_the_exchange_ends_setup_with_the_reason(
    tmp_path: Path, aiohttp_server: AiohttpServer
) -> None:
    github_api = await aiohttp_server(_conversions_app(_pem(), []))
    options = SetupOptions(webhook_url=WEBHOOK_URL, api_url=str(github_api.make_url("")), port=0,
                           env_file=tmp_path / ".env", state_dir=tmp_path / "state", manifest_path=MANIFEST)
    task, url = await _start(options)
    async with ClientSession() as session:
        action, manifest = await _form(session, url)
        state = parse_qs(urlsplit(action).query)["state"][0]
        await github_api.close()
        async with session.get(manifest["redirect_url"], params={"code": "abc", "state": state}) as response:
            assert response.status == 502
    with pytest.raises(GitHubUnreachable, match="cannot reach GitHub"):
        await asyncio.wait_for(task, 10)
    assert not (tmp_path / ".env").exists()


def test_enterprise_server_api_lives_under_api_v3() -> None:
    assert api_url_for("https://github.com/") == "https://api.github.com"
    assert api_url_for("https://ghe.example.test/") == "https://ghe.example.test/api/v3"
    with pytest.raises(SetupError, match="--github-url"):
        api_url_for("ghe.example.test")


def test_the_packaged_manifest_is_the_repositorys(tmp_path: Path) -> None:
    assert load_manifest() == load_manifest(MANIFEST)


async def test_setup_command_works_from_another_folder_and_prints_each_step(tmp_path: Path) -> None:
    hub = FakeHub(tmp_path / "github")
    await hub.start()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env_file = elsewhere / "agentz.env"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentz_app", "--env-file", str(env_file), "setup", "--webhook-url", WEBHOOK_URL,
        "--port", "0", "--no-open", "--github-url", GHES, "--api-url", hub.api_url, cwd=elsewhere,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "STATE_DIR": str(elsewhere / "state")})
    assert process.stdout is not None
    lines: list[str] = []
    try:
        while not lines or not lines[-1].startswith("Open "):
            line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
            assert line, "".join(lines)
            lines.append(line)
        page = lines[-1].split()[1]
        async with ClientSession() as session:
            await _create_app_on_fakehub(session, hub, page)
        output, _ = await asyncio.wait_for(process.communicate(), 30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await hub.stop()
    text = "".join(lines) + output.decode()
    assert process.returncode == 0, text
    assert "- checking that GitHub answers at" in text
    assert "- GitHub sent the browser back; exchanging the code" in text
    assert "Registered App agent-z" in text
    assert Settings.load(env_file).github_app_id is not None
