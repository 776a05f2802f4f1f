"""``agentz doctor``: is this host ready to run the given roles? Every problem at once, each with its fix.

This module holds the configuration, database and state checks. The entry point adds the agent
CLI checks (``workers/runners/probe.py``) and the sandbox probe (``workers/sandbox_check.py``),
since ``agentz_app`` does not import ``workers``. ``agentz serve`` runs the same checks before
it starts any role.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from cryptography.hazmat.primitives import serialization

from agentz_app.agent_credentials import LOGIN_FOLDERS, REAL_BACKENDS, backends_in_use, credential_source, login_dir
from agentz_app.config import SANDBOX_WARNING, Settings
from agentz_app.errors import ConfigError
from agentz_app.store.db import Database, DatabaseUnavailable, check_sqlite_path, sqlite_path
from agentz_app.store.migrate import HEAD_REVISION, current_revision

ROLES: tuple[str, ...] = ("receiver", "scheduler", "planner", "worker", "reconciler")
GITHUB_ROLES = frozenset({"scheduler", "planner", "worker", "reconciler"})
AGENT_ROLES = frozenset({"scheduler", "planner", "worker"})
SANDBOXED_ROLES = frozenset({"planner", "worker"})
SETUP_FIX = "run `agentz setup` (it writes GITHUB_APP_ID, GITHUB_WEBHOOK_SECRET and the key), or set it in .env"

# What gives each backend a model, for the fix line.
CREDENTIAL_HINTS = {
    "claude": "set ANTHROPIC_API_KEY (or CLAUDE_CODE_OAUTH_TOKEN from `claude setup-token`) in .env, "
              "or reuse this host's login with AGENT_CLAUDE_LOGIN_DIR=~/.claude",
    "codex": "set OPENAI_API_KEY in .env, or reuse this host's login with AGENT_CODEX_LOGIN_DIR=~/.codex",
    "opencode": "set ANTHROPIC_API_KEY, OPENAI_API_KEY or OPENROUTER_API_KEY in .env",
}


@dataclass(frozen=True)
class Check:
    """One doctor result: what was checked, whether it passed, what was found and how to fix it."""

    name: str
    passed: bool
    detail: str
    fix: str = ""


def _ok(name: str, detail: str) -> Check:
    return Check(name, True, detail)


def _fail(name: str, detail: str, fix: str) -> Check:
    return Check(name, False, detail, fix)


def check_roles(roles: Iterable[str]) -> tuple[str, ...]:
    """The given roles in serve's order, or ValueError naming an unknown one."""
    wanted = set(roles)
    unknown = sorted(wanted - set(ROLES))
    if unknown:
        raise ValueError(f"unknown role {', '.join(unknown)}; choose from {', '.join(ROLES)}")
    return tuple(role for role in ROLES if role in wanted)


# Configuration ------------------------------------------------------------------


def webhook_secret_check(settings: Settings) -> Check:
    """The receiver verifies signatures with GITHUB_WEBHOOK_SECRET."""
    try:
        settings.webhook_secret()
    except ConfigError as exc:
        return _fail("webhook_secret", str(exc), SETUP_FIX)
    return _ok("webhook_secret", "GITHUB_WEBHOOK_SECRET is set")


def app_checks(settings: Settings) -> list[Check]:
    """GITHUB_APP_ID is set and the App's private key is readable and is a private key."""
    checks = []
    if settings.github_app_id is None:
        checks.append(_fail("app_id", "GITHUB_APP_ID is not set", SETUP_FIX))
    else:
        checks.append(_ok("app_id", f"GITHUB_APP_ID={settings.github_app_id}"))
    try:
        pem = settings.private_key_pem()
    except ConfigError as exc:
        unreadable = settings.github_private_key_path is not None and exc.variable == "GITHUB_PRIVATE_KEY_PATH"
        fix = f"make {settings.github_private_key_path} readable by this user" if unreadable else SETUP_FIX
        checks.append(_fail("private_key", str(exc), fix))
        return checks
    try:
        serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        source = "GITHUB_PRIVATE_KEY" if settings.github_private_key is not None else "GITHUB_PRIVATE_KEY_PATH"
        checks.append(_fail("private_key", f"{source}: not a PEM private key ({exc.__class__.__name__})",
                            "use the .pem file GitHub generated for the App (Settings → Private keys)"))
        return checks
    source = "GITHUB_PRIVATE_KEY" if settings.github_private_key is not None else str(settings.github_private_key_path)
    checks.append(_ok("private_key", f"the App's private key is readable ({source})"))
    return checks


def state_dir_check(settings: Settings) -> Check:
    """STATE_DIR (logs, mirrors, working copies) is writable, or can be created."""
    folder = settings.state_dir
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return _fail("state_dir", f"STATE_DIR={folder}: {existing} is not a folder", "set STATE_DIR to a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".agentz-doctor-"):
            pass
    except OSError as exc:
        return _fail("state_dir", f"STATE_DIR={folder}: {existing} is not writable ({exc.strerror})",
                     f"make {existing} writable by this user, or set STATE_DIR elsewhere")
    if existing != folder:
        return _ok("state_dir", f"STATE_DIR={folder} will be created in {existing}")
    return _ok("state_dir", f"STATE_DIR={folder} is writable")


def credential_checks(settings: Settings, backends: Sequence[str]) -> list[Check]:
    """Every real backend in use has model credentials (a key, a custom endpoint or a reused login)."""
    checks = []
    for backend in backends:
        if backend not in REAL_BACKENDS:
            continue
        name = f"model_credentials_{backend}"
        folder = login_dir(settings, backend)
        login = LOGIN_FOLDERS.get(backend)
        if folder is not None and login is not None and not any((folder / f).is_file() for f in login.files):
            checks.append(_fail(name, f"{login.setting}={folder} holds no {' or '.join(login.files)}",
                                f"log in on this host with `{login.login_command}`, or fix {login.setting}"))
            continue
        source = credential_source(settings, backend)
        if source is None:
            checks.append(_fail(name, f"no model credentials for the {backend} backend", CREDENTIAL_HINTS[backend]))
        else:
            checks.append(_ok(name, f"{backend} agents get {source}"))
    return checks


def sandbox_mode_check(settings: Settings) -> Check | None:
    """With AGENT_SANDBOX=none, `agentz serve` warns (and runs no probe)."""
    if settings.agent_sandbox == "none":
        return _ok("sandbox_enabled", f"warning: {SANDBOX_WARNING}")
    return None


def config_checks(settings: Settings, roles: Sequence[str]) -> list[Check]:
    """The configuration the roles need: webhook secret, App credentials, state folder, model credentials."""
    checks = []
    if "receiver" in roles:
        checks.append(webhook_secret_check(settings))
    if GITHUB_ROLES & set(roles):
        checks += app_checks(settings)
    checks.append(state_dir_check(settings))
    checks += credential_checks(settings, backends_in_use(settings, tuple(roles)))
    return checks


# Database -----------------------------------------------------------------------


def database_checks(settings: Settings, *, migrated_at_start: bool = False) -> list[Check]:
    """The database is reachable and at the current schema; creates nothing.

    ``migrated_at_start`` (``agentz serve``): a database that is new or behind passes, since
    serve creates or migrates it next.
    """
    url = settings.database_url
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        try:
            check_sqlite_path(url, create=True, creatable=None)
            folder_ok = True
        except DatabaseUnavailable:
            folder_ok = path.parent.resolve() == settings.state_dir.resolve()
        if not folder_ok:
            return [_fail("database", f"DATABASE_URL: the folder {path.parent} does not exist",
                          "create the folder, or fix DATABASE_URL")]
        if migrated_at_start:
            return [_ok("database", f"no database at {path} yet; it is created now")]
        return [_fail("database", f"no database at {path} yet", "run `agentz migrate`")]
    db = Database.from_url(url)
    try:
        try:
            db.connect_or_raise()
        except DatabaseUnavailable as exc:
            return [_fail("database", str(exc), "start the database server, or fix DATABASE_URL")]
        checks = [_ok("database", "DATABASE_URL is reachable")]
        revision = current_revision(db)
        if revision == HEAD_REVISION:
            checks.append(_ok("database_schema", f"schema at {HEAD_REVISION}"))
        elif migrated_at_start:
            checks.append(_ok("database_schema", f"schema at {revision or 'none'}; migrated to {HEAD_REVISION} now"))
        else:
            checks.append(_fail("database_schema", f"schema at {revision or 'none'}, not {HEAD_REVISION}",
                                "run `agentz migrate`"))
        return checks
    finally:
        db.dispose()


# Output -------------------------------------------------------------------------


def render(checks: Sequence[Check]) -> str:
    """A table: pass/FAIL, name, detail, and under each failure its fix."""
    width = max((len(check.name) for check in checks), default=0)
    lines = []
    for check in checks:
        lines.append(f"{'pass' if check.passed else 'FAIL'}  {check.name:<{width}}  {check.detail}")
        if not check.passed and check.fix:
            lines.append(f"      {'':<{width}}  fix: {check.fix}")
    return "\n".join(lines)


def checks_json(checks: Sequence[Check]) -> str:
    """The checks as a JSON list of {name, passed, detail, fix}."""
    return json.dumps([asdict(check) for check in checks], indent=2)


def problems_line(checks: Sequence[Check]) -> str:
    """The failed checks on one line, for ``agentz serve``'s refusal."""
    return "; ".join(f"{check.name}: {check.detail}" for check in checks if not check.passed)

