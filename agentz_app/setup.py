"""``agentz setup``: register the GitHub App with GitHub's App manifest flow.

0. GitHub's API must answer (``GET {api_url}/``): an unreachable GitHub fails at once with the reason.
1. A local page on 127.0.0.1 shows a form that POSTs the manifest (``app-manifest.yml``,
   shipped in the package; ``--manifest`` overrides it; as JSON, with the webhook URL and
   this page's redirect URL filled in) to ``{github_url}/settings/apps/new`` (or
   ``/organizations/{org}/settings/apps/new``). GitHub Enterprise Server: ``--github-url``
   is its web address and its API is ``{github_url}/api/v3``.
2. GitHub creates the App and redirects the browser back with ``?code=…&state=…``.
3. The code is exchanged at ``POST {api_url}/app-manifests/{code}/conversions`` for the
   App's id, slug, webhook secret and private key.
4. The key goes to ``<state_dir>/<slug>.private-key.pem`` and ``GITHUB_APP_ID``,
   ``GITHUB_APP_SLUG``, ``GITHUB_WEBHOOK_SECRET`` and ``GITHUB_PRIVATE_KEY_PATH`` into
   the ``.env`` file (plus ``GITHUB_API_URL`` and ``GIT_URL_TEMPLATE`` for GitHub Enterprise
   Server); both files get mode 0600 and other ``.env`` lines are kept.

Each step is reported through ``on_step``, so the terminal shows what the browser shows.
"""

from __future__ import annotations

import asyncio
import html
import importlib.resources
import json
import os
import re
import secrets
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import yaml
from aiohttp import ClientError, ClientSession, ClientTimeout, web

from agentz_app.errors import AgentZError

DEFAULT_PORT = 8765
_SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")
_CODE_RE = re.compile(r"^[A-Za-z0-9_-]{1,200}$")
_ORG_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})$")
_ENV_KEY_RE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")
_REQUIRED_MANIFEST_KEYS = ("name", "url", "default_events", "default_permissions")
MANIFEST_NAME = "app-manifest.yml"
PUBLIC_GITHUB = "https://github.com"
PUBLIC_API = "https://api.github.com"
REACH_TIMEOUT = 10.0
Step = Callable[[str], object]


class SetupError(AgentZError):
    """The App manifest flow could not be completed."""


@dataclass(frozen=True)
class SetupOptions:
    """Where GitHub is, where to write, and how the local page listens."""

    webhook_url: str
    github_url: str = "https://github.com"
    api_url: str = "https://api.github.com"
    org: str | None = None
    port: int = DEFAULT_PORT
    env_file: Path = Path(".env")
    state_dir: Path = Path(".agent-z")
    manifest_path: Path | None = None  # None: the manifest shipped in the package
    host: str = "127.0.0.1"
    allow_workflow_changes: bool = False
    """``ALLOW_WORKFLOW_CHANGES``: ask for ``workflows: write`` so pushes touching .github/workflows/ are accepted."""


@dataclass(frozen=True)
class AppCredentials:
    """What GitHub returns for a newly created App."""

    app_id: int
    slug: str
    webhook_secret: str
    pem: str
    html_url: str


@dataclass(frozen=True)
class SetupResult:
    credentials: AppCredentials
    key_path: Path
    env_file: Path


# Pure parts -------------------------------------------------------------------


def packaged_manifest() -> Path:
    """The App manifest shipped in the package (in a source checkout, the repository's own)."""
    packaged = importlib.resources.files("agentz_app").joinpath(MANIFEST_NAME)
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parents[1] / MANIFEST_NAME


def load_manifest(path: Path | None = None) -> dict[str, Any]:
    """Read and check the App manifest YAML (default: the packaged one)."""
    path = packaged_manifest() if path is None else path
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SetupError(f"cannot read the App manifest {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise SetupError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SetupError(f"{path} must hold a mapping")
    missing = [key for key in _REQUIRED_MANIFEST_KEYS if key not in data]
    if missing:
        raise SetupError(f"{path} lacks {', '.join(missing)}")
    if not isinstance(data["default_events"], list) or not isinstance(data["default_permissions"], dict):
        raise SetupError(f"{path}: default_events must be a list and default_permissions a mapping")
    return data


def manifest_for_settings(template: Mapping[str, Any], *, allow_workflow_changes: bool) -> dict[str, Any]:
    """The manifest with ``workflows: write`` added only when agents may change workflows.

    GitHub refuses a push that touches ``.github/workflows/`` from an App without it; the
    content policy refuses such changes anyway unless ``ALLOW_WORKFLOW_CHANGES`` is on, so
    the App asks for no more than it can use.
    """
    manifest: dict[str, Any] = json.loads(json.dumps(dict(template)))
    permissions = dict(manifest.get("default_permissions") or {})
    if allow_workflow_changes:
        permissions["workflows"] = "write"
    else:
        permissions.pop("workflows", None)
    manifest["default_permissions"] = permissions
    return manifest


def build_manifest(template: Mapping[str, Any], *, webhook_url: str, redirect_url: str) -> dict[str, Any]:
    """The manifest to post: the template with the webhook and redirect URLs filled in."""
    for label, url in (("webhook URL", webhook_url), ("redirect URL", redirect_url)):
        if not url.startswith(("http://", "https://")):
            raise SetupError(f"the {label} must be an http(s) URL, got {url!r}")
    manifest: dict[str, Any] = json.loads(json.dumps(dict(template)))
    hook = dict(manifest.get("hook_attributes") or {})
    hook["url"] = webhook_url
    hook.setdefault("active", True)
    manifest["hook_attributes"] = hook
    manifest["redirect_url"] = redirect_url
    return manifest


def api_url_for(github_url: str) -> str:
    """GitHub's API address for its web address: api.github.com, or GitHub Enterprise Server's ``/api/v3``."""
    base = github_url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise SetupError(f"--github-url must be an http(s) URL, got {github_url!r}")
    return PUBLIC_API if base == PUBLIC_GITHUB else f"{base}/api/v3"


def enterprise_settings(github_url: str, api_url: str) -> dict[str, str]:
    """The extra ``.env`` values for a GitHub other than github.com (API and clone URLs)."""
    base = github_url.rstrip("/")
    if base == PUBLIC_GITHUB:
        return {}
    return {"GITHUB_API_URL": api_url.rstrip("/"), "GIT_URL_TEMPLATE": f"{base}/{{full_name}}.git"}


def new_app_url(github_url: str, org: str | None, state: str) -> str:
    """GitHub's page that accepts a posted manifest, for a user or an organisation."""
    base = github_url.rstrip("/")
    if org:
        if not _ORG_RE.match(org):
            raise SetupError(f"not a valid organisation name: {org!r}")
        return f"{base}/organizations/{org}/settings/apps/new?state={quote(state)}"
    return f"{base}/settings/apps/new?state={quote(state)}"


def render_form(action: str, manifest: Mapping[str, Any]) -> str:
    """The local page: a form posting the manifest to GitHub."""
    value = html.escape(json.dumps(manifest), quote=True)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Agent-Z setup</title></head><body>"
        "<h1>Create the Agent-Z GitHub App</h1>"
        "<p>GitHub will ask you to confirm the App's name, then send you back here.</p>"
        f"<form id='manifest-form' method='post' action='{html.escape(action, quote=True)}'>"
        f"<input type='hidden' name='manifest' value='{value}'>"
        "<button type='submit'>Create GitHub App</button></form>"
        "</body></html>"
    )


def parse_conversion(payload: object) -> AppCredentials:
    """Check GitHub's conversion answer and pick the fields Agent-Z needs."""
    if not isinstance(payload, dict):
        raise SetupError("GitHub's answer is not a JSON object")
    try:
        app_id = int(payload["id"])
        slug = str(payload["slug"])
        pem = str(payload["pem"])
        secret = payload.get("webhook_secret")
    except (KeyError, TypeError, ValueError) as exc:
        raise SetupError(f"GitHub's answer lacks a field: {exc}") from None
    if app_id < 1:
        raise SetupError("GitHub returned an invalid App id")
    if not _SLUG_RE.match(slug):
        raise SetupError(f"GitHub returned an unexpected App slug {slug!r}")
    if "PRIVATE KEY-----" not in pem:
        raise SetupError("GitHub's answer holds no PEM private key")
    if not isinstance(secret, str) or not secret:
        raise SetupError("GitHub's answer holds no webhook secret; is hook_attributes.url set?")
    return AppCredentials(app_id, slug, secret, pem, str(payload.get("html_url") or ""))


def _env_value(value: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_./:@+-]*", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def update_env_text(text: str, values: Mapping[str, str]) -> str:
    """``text`` with each ``KEY=`` line of ``values`` replaced (or appended); other lines kept."""
    lines = text.splitlines()
    seen: set[str] = set()
    out: list[str] = []
    for line in lines:
        match = _ENV_KEY_RE.match(line)
        key = match.group(1) if match else None
        if key is not None and key in values:
            if key not in seen:
                out.append(f"{key}={_env_value(values[key])}")
                seen.add(key)
            continue  # drop duplicates of a key we set
        out.append(line)
    missing = [key for key in values if key not in seen]
    if missing and out and out[-1].strip():
        out.append("")
    out.extend(f"{key}={_env_value(values[key])}" for key in missing)
    return "\n".join(out) + "\n"


# File writes ------------------------------------------------------------------


def write_private(path: Path, content: str) -> None:
    """Write ``content`` atomically to ``path`` with mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    os.chmod(path, 0o600)


def save_credentials(credentials: AppCredentials, *, env_file: Path, state_dir: Path,
                     extra: Mapping[str, str] | None = None) -> Path:
    """Store the private key and update ``.env`` (with ``extra`` values too); returns the key's path."""
    key_path = (state_dir / f"{credentials.slug}.private-key.pem").absolute()
    write_private(key_path, credentials.pem)
    existing = env_file.read_text() if env_file.exists() else ""
    write_private(env_file, update_env_text(existing, {
        "GITHUB_APP_ID": str(credentials.app_id),
        "GITHUB_APP_SLUG": credentials.slug,
        "GITHUB_WEBHOOK_SECRET": credentials.webhook_secret,
        "GITHUB_PRIVATE_KEY_PATH": str(key_path),
        **(extra or {}),
    }))
    return key_path


# HTTP -------------------------------------------------------------------------


class GitHubUnreachable(SetupError):
    """GitHub's API did not answer at all (network, DNS, TLS or timeout)."""


async def check_reachable(session: ClientSession, api_url: str) -> None:
    """Raise GitHubUnreachable unless ``api_url`` answers an HTTP request (any status) within REACH_TIMEOUT."""
    try:
        async with session.get(f"{api_url.rstrip('/')}/", timeout=ClientTimeout(total=REACH_TIMEOUT)) as response:
            await response.read()
    except TimeoutError:
        raise GitHubUnreachable(f"cannot reach GitHub at {api_url}: no answer within {REACH_TIMEOUT:.0f}s") from None
    except ClientError as exc:
        raise GitHubUnreachable(f"cannot reach GitHub at {api_url}: {_reason(exc)}") from None


def _reason(exc: BaseException) -> str:
    cause = exc.__cause__ or getattr(exc, "os_error", None) or exc
    text = str(cause).strip() or cause.__class__.__name__
    return text.splitlines()[0][:300]


async def exchange_code(session: ClientSession, api_url: str, code: str) -> AppCredentials:
    """Trade the redirect's code for the App's credentials."""
    if not _CODE_RE.match(code):
        raise SetupError("the code GitHub sent back is malformed")
    url = f"{api_url.rstrip('/')}/app-manifests/{code}/conversions"
    headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
    try:
        async with session.post(url, headers=headers, timeout=ClientTimeout(total=30)) as response:
            if response.status != 201:
                text = (await response.text())[:300]
                raise SetupError(f"GitHub refused the code ({response.status}): {text}")
            payload = await response.json(content_type=None)
    except TimeoutError:
        raise GitHubUnreachable(f"cannot reach GitHub at {api_url}: no answer within 30s") from None
    except ClientError as exc:
        raise GitHubUnreachable(f"cannot reach GitHub at {api_url}: {_reason(exc)}") from None
    return parse_conversion(payload)


def _page(title: str, body: str, status: int = 200) -> web.Response:
    text = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
            f"<body><h1>{html.escape(title)}</h1><p>{html.escape(body)}</p></body></html>")
    return web.Response(text=text, content_type="text/html", status=status)


def _nothing(_: str) -> None:
    return None


def create_setup_app(options: SetupOptions, done: asyncio.Future[SetupResult],
                     on_step: Step = _nothing) -> web.Application:
    """The local pages: ``GET /`` shows the form, ``GET /redirect`` finishes the flow.

    A refused code leaves the flow open (the user may try again); an unreachable GitHub ends it.
    """
    template = manifest_for_settings(load_manifest(options.manifest_path),
                                     allow_workflow_changes=options.allow_workflow_changes)
    state = secrets.token_urlsafe(24)
    app = web.Application()

    async def form(request: web.Request) -> web.Response:
        redirect_url = f"{request.url.origin()}/redirect"
        manifest = build_manifest(template, webhook_url=options.webhook_url, redirect_url=redirect_url)
        action = new_app_url(options.github_url, options.org, state)
        on_step(f"the browser opened the setup page; it posts the manifest to {urlsplit(action).netloc}")
        return web.Response(text=render_form(action, manifest), content_type="text/html")

    async def redirect(request: web.Request) -> web.Response:
        if not secrets.compare_digest(request.query.get("state", ""), state):
            return _page("Setup failed", "This link does not belong to this setup; start again.", 400)
        code = request.query.get("code", "")
        if done.done():
            return _page("Already done", "The App was already created.")
        on_step(f"GitHub sent the browser back; exchanging the code at {options.api_url}")
        try:
            async with ClientSession() as session:
                credentials = await exchange_code(session, options.api_url, code)
            on_step(f"GitHub created App {credentials.slug} (id {credentials.app_id}); writing its key and "
                    f"{options.env_file}")
            key_path = save_credentials(credentials, env_file=options.env_file, state_dir=options.state_dir,
                                        extra=enterprise_settings(options.github_url, options.api_url))
        except GitHubUnreachable as exc:
            if not done.done():
                done.set_exception(exc)
            return _page("Setup failed", str(exc), 502)
        except (SetupError, OSError) as exc:
            message = str(exc) if isinstance(exc, SetupError) else f"cannot write the credentials: {exc}"
            on_step(f"failed: {message}; try again from the setup page, or press Ctrl-C")
            return _page("Setup failed", message, 502)
        done.set_result(SetupResult(credentials, key_path, options.env_file))
        install = f"{credentials.html_url}/installations/new" if credentials.html_url else "the App's page"
        return _page("Agent-Z is registered",
                     f"App {credentials.slug} (id {credentials.app_id}) saved to {options.env_file}. "
                     f"Now install it on your repositories: {install}")

    app.router.add_get("/", form)
    app.router.add_get("/redirect", redirect)
    return app


async def run_setup(
    options: SetupOptions,
    *,
    on_ready: Callable[[str], object] = print,
    on_step: Step = _nothing,
) -> SetupResult:
    """Check GitHub answers, then serve the local page until GitHub's redirect has been handled.

    ``on_ready`` gets the page's URL; ``on_step`` a line for each step. It waits for the
    redirect as long as it takes: bound it with ``asyncio.timeout`` where that matters.
    """
    load_manifest(options.manifest_path)  # a bad manifest fails before anything is served
    on_step(f"checking that GitHub answers at {options.api_url}")
    async with ClientSession() as session:
        await check_reachable(session, options.api_url)
    done: asyncio.Future[SetupResult] = asyncio.get_running_loop().create_future()
    app = create_setup_app(options, done, on_step)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, options.host, options.port)
        try:
            await site.start()
        except OSError as exc:
            raise SetupError(f"cannot listen on {options.host}:{options.port}: {exc.strerror}") from None
        host, port = runner.addresses[0][:2]
        on_ready(f"http://{host}:{port}/")
        return await done
    finally:
        await asyncio.sleep(0.1)  # let the success page reach the browser
        await runner.cleanup()
