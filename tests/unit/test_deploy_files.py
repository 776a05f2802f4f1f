"""Deployment files parse and only call real ``agentz`` subcommands and options."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import click
import yaml

from agentz_app.cli import cli
from agentz_app.supervisor import ROLES

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def _check_invocation(args: list[str]) -> None:
    """Assert ``agentz <args>`` names a real subcommand with real options."""
    group_options = {opt for param in cli.params for opt in getattr(param, "opts", [])}
    index = 0
    while index < len(args) and args[index].startswith("-"):
        assert args[index] in group_options, f"unknown global option {args[index]}"
        index += 2  # every global option takes a value
    assert index < len(args), f"no subcommand in {args}"
    name = args[index]
    assert name in cli.commands, f"`agentz {name}` is not a command"
    command = cli.commands[name]
    options = {
        opt for param in command.params if isinstance(param, click.Option) for opt in param.opts + param.secondary_opts
    }
    for arg in args[index + 1 :]:
        if arg.startswith("--"):
            assert arg.split("=", 1)[0] in options, f"`agentz {name}` has no option {arg}"


def _dockerfile_json(instruction: str) -> list[str]:
    text = (DEPLOY / "Dockerfile").read_text()
    match = re.search(rf"^{instruction}\s+(\[.*\])\s*$", text, re.M)
    assert match, f"no JSON-form {instruction}"
    value: list[str] = json.loads(match.group(1))
    return value


def _exec_start(unit: str) -> list[str]:
    text = (DEPLOY / "systemd" / unit).read_text()
    match = re.search(r"^ExecStart=(.+)$", text, re.M)
    assert match, f"{unit} has no ExecStart"
    argv = shlex.split(match.group(1))
    assert Path(argv[0]).name == "agentz"
    return argv[1:]


def test_dockerfile_runs_serve_as_a_non_root_user_with_a_health_check() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    user = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert user and user[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n?.*?/healthz", text, re.M)
    assert _dockerfile_json("ENTRYPOINT") == ["agentz"]
    cmd = _dockerfile_json("CMD")
    assert cmd == ["serve", "--no-tui"]
    _check_invocation(cmd)


def test_compose_runs_the_app_against_postgres_with_the_env_file() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["postgres"]["image"] == "postgres:16"
    volume = services["postgres"]["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]
    app = services["agentz"]
    assert app["environment"]["DATABASE_URL"].startswith("postgresql://")
    assert any(Path(entry).name == ".env" for entry in app["env_file"])
    assert any(str(port).endswith("8000:8000") for port in app["ports"])
    _check_invocation(app["command"])


def test_systemd_units_call_real_subcommands() -> None:
    _check_invocation(_exec_start("agentz.service"))
    template = _exec_start("agentz@.service")
    assert template[-1] == "%i"
    for role in ROLES:
        _check_invocation([*template[:-1], role])


def test_every_supervised_role_is_an_agentz_subcommand() -> None:
    assert set(ROLES) == {"receiver", "scheduler", "planner", "worker", "reconciler"}
    missing = [role for role in ROLES if role not in cli.commands]
    assert not missing, f"roles without an `agentz` subcommand: {missing}"


def test_app_manifest_asks_for_the_events_and_permissions_agent_z_needs() -> None:
    manifest = yaml.safe_load((ROOT / "app-manifest.yml").read_text())
    for key in ("name", "url", "hook_attributes", "redirect_url", "public", "default_events", "default_permissions"):
        assert key in manifest
    assert manifest["public"] is False
    assert "url" in manifest["hook_attributes"]
    assert {"issues", "issue_comment", "pull_request", "pull_request_review", "check_run", "check_suite",
            "status"} <= set(manifest["default_events"])
    assert manifest["default_permissions"] == {
        "checks": "write", "contents": "write", "issues": "write", "pull_requests": "write",
        "metadata": "read", "members": "read",
    }


def test_deploy_guide_covers_webhook_forwarding_proxy_and_secrets() -> None:
    guide = (DEPLOY / "README.md").read_text()
    for needle in ("smee", "gh webhook forward", "location /api/github/webhooks", "0600", "agentz setup"):
        assert needle in guide
