"""`agentz doctor` lists every problem with its fix; `agentz serve` and `agentz issue` refuse to start without it."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from agentz_app.cli import cli
from agentz_app.store.db import Database
from agentz_app.store.migrate import migrate
from agentz_app.store.runs import RunQueue
from tests.fakehub_fixtures import make_private_key

CLEARED = ("DATABASE_URL", "GITHUB_APP_ID", "GITHUB_PRIVATE_KEY", "GITHUB_PRIVATE_KEY_PATH", "GITHUB_WEBHOOK_SECRET",
           "GITHUB_REPO", "DEFAULT_BACKEND", "TASK_LEAD_BACKEND", "REVIEWER_BACKEND", "SCHEDULER_BACKEND",
           "STATE_DIR", "AGENTZ_CLI_DIR", "AGENTZ_MODEL_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN",
           "CLAUDE_CODE_OAUTH_TOKEN", "OPENAI_API_KEY", "CODEX_API_KEY", "OPENROUTER_API_KEY",
           "AGENT_CLAUDE_LOGIN_DIR", "AGENT_CODEX_LOGIN_DIR")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in CLEARED:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """A PATH folder with a fake `codex` CLI that answers --version (and no `claude`)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    codex = folder / "codex"
    codex.write_text("#!/bin/sh\necho 'codex-cli 9.9.9'\n")
    codex.chmod(codex.stat().st_mode | stat.S_IXUSR)
    return folder


def _configured(tmp_path: Path, bin_dir: Path) -> dict[str, str]:
    key = tmp_path / "app.pem"
    key.write_text(make_private_key())
    key.chmod(0o600)
    state = tmp_path / "state"
    return {"GITHUB_APP_ID": "42", "GITHUB_PRIVATE_KEY_PATH": str(key), "GITHUB_WEBHOOK_SECRET": "whsec-test",
            "STATE_DIR": str(state), "DATABASE_URL": f"sqlite:///{state / 'agentz.db'}", "DEFAULT_BACKEND": "codex",
            "OPENAI_API_KEY": "sk-test-0123456789", "PATH": f"{bin_dir}:/usr/bin:/bin", "LOG_FORMAT": "json"}


def invoke(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(cli, ["--env-file", os.devnull, *args], env=env)


def _by_name(result: Result) -> dict[str, dict[str, object]]:
    return {check["name"]: check for check in json.loads(result.stdout)}


def test_an_unconfigured_host_gets_every_problem_at_once_with_its_fix(tmp_path: Path, bin_dir: Path) -> None:
    env = {"STATE_DIR": str(tmp_path / "state"), "DATABASE_URL": f"sqlite:///{tmp_path / 'state' / 'agentz.db'}",
           "PATH": f"{bin_dir}:/usr/bin:/bin", "REVIEWER_BACKEND": "codex", "LOG_FORMAT": "json"}
    result = invoke(env, "doctor", "--json", "--role", "receiver", "--role", "worker")
    assert result.exit_code == 1
    checks = _by_name(result)
    failed = {name for name, check in checks.items() if not check["passed"]}
    assert {"webhook_secret", "app_id", "private_key", "database", "agent_cli_claude",
            "model_credentials_claude", "model_credentials_codex"} <= failed
    assert checks["agent_cli_codex"]["passed"]
    assert "codex-cli 9.9.9" in str(checks["agent_cli_codex"]["detail"])
    assert all(check["fix"] for name, check in checks.items() if name in failed)
    assert "agentz setup" in str(checks["app_id"]["fix"])
    assert "ANTHROPIC_API_KEY" in str(checks["model_credentials_claude"]["fix"])
    assert "agentz migrate" in str(checks["database"]["fix"])
    # The doctor creates nothing of the host's (its sandbox probe works in a scratch folder of its own).
    assert not (tmp_path / "state" / "agentz.db").exists()
    assert not (tmp_path / "state").exists() or not any((tmp_path / "state").iterdir())


def test_a_configured_host_passes(tmp_path: Path, bin_dir: Path) -> None:
    env = _configured(tmp_path, bin_dir)
    assert invoke(env, "migrate").exit_code == 0
    result = invoke(env, "doctor", "--role", "receiver", "--role", "scheduler", "--role", "reconciler")
    assert result.exit_code == 0, result.output
    assert "FAIL" not in result.output
    assert "model_credentials_codex" in result.output
    assert "OPENAI_API_KEY" in result.output
    assert "sk-test-0123456789" not in result.output


def test_an_old_schema_and_an_unreadable_or_bogus_key_fail_with_their_fixes(tmp_path: Path, bin_dir: Path) -> None:
    env = _configured(tmp_path, bin_dir)
    bogus = "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n"
    Path(env["GITHUB_PRIVATE_KEY_PATH"]).write_text(bogus)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "agentz.db").touch()  # a database without a schema
    checks = _by_name(invoke(env, "doctor", "--json", "--role", "reconciler"))
    assert not checks["private_key"]["passed"]
    assert "not a PEM private key" in str(checks["private_key"]["detail"])
    assert not checks["database_schema"]["passed"]
    assert "agentz migrate" in str(checks["database_schema"]["fix"])

    missing = {**env, "GITHUB_PRIVATE_KEY_PATH": str(tmp_path / "absent.pem")}
    checks = _by_name(invoke(missing, "doctor", "--json", "--role", "reconciler"))
    assert not checks["private_key"]["passed"]
    assert "cannot read key file" in str(checks["private_key"]["detail"])


def test_a_reused_cli_login_counts_as_credentials_only_when_it_holds_one(tmp_path: Path, bin_dir: Path) -> None:
    login = tmp_path / "codex-login"
    login.mkdir()
    env = {**_configured(tmp_path, bin_dir), "AGENT_CODEX_LOGIN_DIR": str(login)}
    del env["OPENAI_API_KEY"]
    checks = _by_name(invoke(env, "doctor", "--json", "--role", "scheduler"))
    assert not checks["model_credentials_codex"]["passed"]
    assert "codex login" in str(checks["model_credentials_codex"]["fix"])
    (login / "auth.json").write_text("{}")
    checks = _by_name(invoke(env, "doctor", "--json", "--role", "scheduler"))
    assert checks["model_credentials_codex"]["passed"]
    assert "AGENT_CODEX_LOGIN_DIR" in str(checks["model_credentials_codex"]["detail"])


def test_serve_without_configuration_starts_nothing_and_says_why(tmp_path: Path, bin_dir: Path) -> None:
    state = tmp_path / "state"
    env = {"STATE_DIR": str(state), "DATABASE_URL": f"sqlite:///{state / 'agentz.db'}", "AGENT_SANDBOX": "none",
           "PATH": f"{bin_dir}:/usr/bin:/bin", "LOG_FORMAT": "json"}
    result = invoke(env, "serve", "--no-tui")
    assert result.exit_code == 1
    assert "not starting:" in result.output
    for name in ("webhook_secret", "app_id", "private_key", "model_credentials_claude", "agent_cli_claude"):
        assert name in result.output
    assert "warning: AGENT_SANDBOX=none" in result.output
    assert not (state / "agentz.db").exists()


def test_issue_without_app_credentials_queues_nothing(tmp_path: Path, bin_dir: Path) -> None:
    env = _configured(tmp_path, bin_dir)
    env["DEFAULT_BACKEND"] = "scripted"
    del env["GITHUB_APP_ID"]
    (tmp_path / "state").mkdir()
    db = Database.from_url(env["DATABASE_URL"])
    migrate(db)
    result = invoke(env, "issue", "5", "--repo", "octo/demo")
    assert result.exit_code == 1
    assert "GITHUB_APP_ID is not set" in result.output
    assert "nothing was queued" in result.output
    assert RunQueue(db).reads.list_runs() == []
    db.dispose()
