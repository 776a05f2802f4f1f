"""``agentz setup``'s App manifest flow, driven end to end over real local HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import re
import stat
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import ClientSession, web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from agentz_app.config import Settings
from agentz_app.setup import SetupError, SetupOptions, build_manifest, run_setup, update_env_text

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
    task = asyncio.create_task(run_setup(options, on_ready=ready.set_result, timeout=30))
    return task, await asyncio.wait_for(ready, 10)


async def _form(session: ClientSession, url: str) -> tuple[str, dict[str, Any]]:
    async with session.get(url) as response:
        assert response.status == 200
        page = await response.text()
    action = re.search(r"action='([^']*)'", page)
    value = re.search(r"name='manifest' value='([^']*)'", page)
    assert action is not None and value is not None
    return html.unescape(action.group(1)), json.loads(html.unescape(value.group(1)))


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_manifest_flow_writes_the_app_credentials_to_env_and_key_file(
    tmp_path: Path, aiohttp_server: Any
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


async def test_organisation_apps_post_to_the_organisation_page(tmp_path: Path) -> None:
    options = SetupOptions(webhook_url=WEBHOOK_URL, github_url="https://github.example", org="octo-org",
                           port=0, env_file=tmp_path / ".env", manifest_path=MANIFEST)
    task, url = await _start(options)
    async with ClientSession() as session:
        action, _ = await _form(session, url)
    await _cancel(task)
    assert action.startswith("https://github.example/organizations/octo-org/settings/apps/new?state=")


async def test_a_refused_code_shows_an_error_and_writes_nothing(tmp_path: Path, aiohttp_server: Any) -> None:
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
