"""Deployment files parse and only call real ``agentz`` subcommands and options."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from agentz_app.cli import cli
from agentz_app.config import Settings
from agentz_app.errors import ConfigError
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
    assert user
    assert user[-1] not in ("root", "0")
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
    assert any(Path(entry["path"]).name == ".env" for entry in app["env_file"])
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
    # Exactly what the code uses: tests/contract/test_manifest_permissions.py derives it from the REST calls.
    assert manifest["default_permissions"] == {
        "actions": "read", "checks": "write", "contents": "write", "issues": "write", "pull_requests": "write",
        "metadata": "read", "statuses": "read",
    }


def test_deploy_guide_covers_webhook_forwarding_proxy_and_secrets() -> None:
    guide = (DEPLOY / "README.md").read_text()
    for needle in ("smee", "gh webhook forward", "location /api/github/webhooks", "0600", "agentz setup"):
        assert needle in guide


# systemd ---------------------------------------------------------------------------------------


def _systemd_environment_file(text: str) -> dict[str, str]:
    """Parse ``text`` as systemd's ``EnvironmentFile=`` does (systemd.exec(5)).

    Lines starting with ``#`` or ``;`` are comments; a trailing backslash continues a line;
    ``KEY=value`` with whitespace around the key and before the value dropped; a value wholly in
    single or double quotes loses its quotes; an unquoted value keeps everything up to the end
    of the line but its trailing whitespace, so an inline ``# comment`` is part of the value.
    """
    values: dict[str, str] = {}
    for line in re.sub(r"\\\n", "", text).splitlines():
        line = line.lstrip()
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not an assignment: {line!r}"
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def _settings_from_environment(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> Settings:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return Settings.load(env_file=None)


def _unit(name: str) -> str:
    return (DEPLOY / "systemd" / name).read_text()


def _directives(unit: str, key: str) -> list[str]:
    return re.findall(rf"^{key}=(.*)$", unit, re.M)


def test_env_example_read_by_systemd_loads_into_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    values = _systemd_environment_file((ROOT / ".env.example").read_text())
    assert {"MAX_PARALLEL_TASKS", "DATABASE_URL", "AGENT_SANDBOX"} <= set(values)
    with_comments = sorted(key for key, value in values.items() if "#" in value)
    assert not with_comments, f"systemd keeps these inline comments as part of the value: {with_comments}"
    settings = _settings_from_environment(monkeypatch, values)
    assert settings.max_parallel_tasks == int(values["MAX_PARALLEL_TASKS"])


def test_an_inline_comment_read_by_systemd_is_an_invalid_value_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values = _systemd_environment_file("MAX_PARALLEL_TASKS=2                # runs at once\n")
    assert values == {"MAX_PARALLEL_TASKS": "2                # runs at once"}
    with pytest.raises(ConfigError, match="MAX_PARALLEL_TASKS"):
        _settings_from_environment(monkeypatch, values)


def test_systemd_environment_file_parser_follows_systemd_quoting_and_comments() -> None:
    text = "# comment\n; comment too\n  A = one two  \nB='quoted # kept'\nC=\"x\"\nD=con\\\ntinued\nE=\n"
    assert _systemd_environment_file(text) == {"A": "one two", "B": "quoted # kept", "C": "x", "D": "continued",
                                               "E": ""}


def test_every_setting_is_documented_in_env_example() -> None:
    text = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, re.M))
    missing = sorted(name.upper() for name in Settings.model_fields if name.upper() not in documented)
    assert not missing, f"settings missing from .env.example: {missing}"


@pytest.mark.parametrize("unit", ["agentz.service", "agentz@.service"])
def test_systemd_units_own_their_state_directory_and_receive_settings_and_key_from_systemd(unit: str) -> None:
    text = _unit(unit)
    assert _directives(text, "User") == ["agentz"]
    assert _directives(text, "StateDirectory") == ["agentz"]
    assert _directives(text, "WorkingDirectory") == ["/var/lib/agentz"]
    # systemd (root) reads the 0600 root-owned file; the service never opens it itself.
    env_files = _directives(text, "EnvironmentFile")
    assert env_files == ["/etc/agentz/agentz.env"]
    exec_start = _directives(text, "ExecStart")[0]
    assert env_files[0] not in exec_start
    assert "--env-file /dev/null" in exec_start
    # The key arrives as a credential readable by this service only.
    assert _directives(text, "LoadCredential") == ["github-app.pem:/etc/agentz/github-app.pem"]
    assert "GITHUB_PRIVATE_KEY_PATH=%d/github-app.pem" in _directives(text, "Environment")
    environment = " ".join(_directives(text, "Environment"))
    assert "STATE_DIR=/var/lib/agentz" in environment
    # Hardening that would break bubblewrap's user namespaces stays out.
    assert not _directives(text, "RestrictNamespaces")
    assert not _directives(text, "PrivateUsers")
    assert _directives(text, "NoNewPrivileges") == ["true"]


# Docker ----------------------------------------------------------------------------------------


def _compose(name: str = "docker-compose.yml") -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load((DEPLOY / name).read_text())
    return compose


def test_image_carries_node_the_pinned_agent_clis_and_bubblewrap() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    install = re.search(r"apt-get install[^\n]*", text)
    assert install
    assert {"bubblewrap", "nodejs", "npm", "git"} <= set(install.group(0).split())
    assert "scripts/install-agent-clis.sh" in text
    assert re.search(r'test -n "\$cli_dir"', text), "an incomplete CLI install must fail the build"
    assert re.search(r"AGENTZ_CLI_DIR=/opt/agentz/clis\b", text)
    assert "ln -s \"$cli_dir\" /opt/agentz/clis" in text
    for cli_name in ("claude", "codex", "opencode"):
        assert f"{cli_name} --version" in text


def test_image_runs_as_uid_10001_with_its_state_in_the_data_volume() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.findall(r"^USER\s+(\S+)", text, re.M)[-1] == "10001:10001"
    assert "--uid 10001" in text
    assert re.search(r"^WORKDIR /data$", text, re.M)
    assert "STATE_DIR=/data/.agent-z" in text


def test_compose_waits_for_a_healthy_postgres_and_keeps_bubblewrap_working_without_capabilities() -> None:
    services = _compose()["services"]
    assert services["postgres"]["healthcheck"]["test"][-1].startswith("pg_isready")
    app = services["agentz"]
    assert app["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert {"seccomp=unconfined", "apparmor=unconfined", "systempaths=unconfined",
            "no-new-privileges:true"} <= set(app["security_opt"])
    assert app["cap_drop"] == ["ALL"]
    assert "agentz-data:/data" in app["volumes"]
    # The credentials `setup` writes in the container live in the volume, not in this file.
    assert "GITHUB_PRIVATE_KEY_PATH" not in app["environment"]
    assert all(entry.get("required") is False for entry in app["env_file"])


def test_compose_host_key_override_mounts_the_key_as_a_secret_readable_through_a_group() -> None:
    override = _compose("docker-compose.host-key.yml")
    app = override["services"]["agentz"]
    assert app["secrets"] == ["github-app-key"]
    assert app["environment"]["GITHUB_PRIVATE_KEY_PATH"] == "/run/secrets/github-app-key"
    assert app["group_add"] == ["${AGENTZ_KEY_GID:?set AGENTZ_KEY_GID to the group of the key file (id -g)}"]
    assert override["secrets"]["github-app-key"]["file"].startswith("${GITHUB_PRIVATE_KEY_FILE:?")


def test_documented_compose_commands_call_real_subcommands() -> None:
    guide = (DEPLOY / "README.md").read_text() + (DEPLOY / "docker-compose.yml").read_text()
    commands = re.findall(r"docker compose (?:-f \S+ )+run --rm (?:-p \S+ )?agentz((?: \\\n#?)?[^\n]*)", guide)
    assert commands, "no `docker compose run --rm agentz …` in the deploy guide"
    for command in commands:
        args = shlex.split(command.replace("\\\n#", " ").replace("\\\n", " "))
        _check_invocation([arg for arg in args if arg != "…"])
    setups = [command for command in commands if " setup " in f" {command} "]
    assert setups
    assert all("--host 0.0.0.0" in command for command in setups)


def test_deploy_guide_explains_the_sandbox_settings_and_what_doctor_says_without_them() -> None:
    guide = (DEPLOY / "README.md").read_text()
    for needle in ("systempaths=unconfined", "seccomp=unconfined", "apparmor=unconfined", "agentz doctor",
                   "probe_ran", "LoadCredential", "StateDirectory", "docker-compose.host-key.yml", "0640"):
        assert needle in guide, needle


# GitHub CI -------------------------------------------------------------------------------------


def _workflow() -> dict[Any, Any]:
    workflow: dict[Any, Any] = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    return workflow


def _readme_test_command() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"Run the tests:\s*```\w*\n(.+?)\n```", readme, re.S)
    assert match, "README has no test command"
    return match.group(1).strip()


def test_workflow_tests_every_supported_python_with_read_only_permissions() -> None:
    workflow = _workflow()
    assert workflow["permissions"] == {"contents": "read"}
    jobs = workflow["jobs"]
    assert all("permissions" not in job for job in jobs.values())
    assert jobs["test"]["strategy"]["matrix"]["python-version"] == ["3.11", "3.12", "3.13"]


def test_workflow_pins_every_action_to_a_commit_sha() -> None:
    text = (ROOT / ".github" / "workflows" / "ci.yml").read_text()
    uses = re.findall(r"uses:\s*(\S+)", text)
    assert uses
    for action in uses:
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", action), f"{action} is not pinned to a commit"


def test_workflow_installs_the_sandbox_and_postgres_then_runs_the_readme_test_command() -> None:
    steps = _workflow()["jobs"]["test"]["steps"]
    scripts = [step.get("run", "") for step in steps]
    install = next(script for script in scripts if "apt-get install" in script)
    assert "bubblewrap" in install
    assert "postgresql" in install
    assert any(script.strip() == _readme_test_command() for script in scripts)
    assert any("doctor" in script for script in scripts)
    checkout = next(step for step in steps if step.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["persist-credentials"] is False


def test_coderabbit_reviews_focus_on_the_risky_parts() -> None:
    config = yaml.safe_load((ROOT / ".coderabbit.yaml").read_text())
    instructions = " ".join(entry["instructions"] for entry in config["reviews"]["path_instructions"]).lower()
    for topic in ("state transitions", "atomicity", "concurrency", "recovery", "external cli calls",
                  "test coverage"):
        assert topic in instructions, topic
