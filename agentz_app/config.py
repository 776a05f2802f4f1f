"""Settings read from the environment and ``.env``, validated once at start-up.

Every name matches ``.env.example``. A bad value raises :class:`ConfigError` naming
the variable, so a process fails at start instead of half-way through a run.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Annotated, Any, Literal

from dotenv import dotenv_values
from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from agentz_app.errors import ConfigError

Backend = Literal["claude", "codex", "opencode", "scripted"]
CommaList = Annotated[list[str], NoDecode]
Network = IPv4Network | IPv6Network
NetworkList = Annotated[list[Network], NoDecode]

_REPO_RE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_LOGIN_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:\[bot\])?$")
HOST_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_MACHINE_ID = Path("/etc/machine-id")

# Variables whose values must never reach an agent subprocess or a log line.
SECRET_VARIABLES = (
    "GITHUB_PRIVATE_KEY",
    "GITHUB_PRIVATE_KEY_PATH",
    "GITHUB_WEBHOOK_SECRET",
    "DATABASE_URL",
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "GITHUB_INSTALLATION_TOKEN",
    "AGENTZ_GIT_TOKEN",
)


# Variables for the agent CLIs (model credentials, model names, base URLs, runner options), read from the
# environment and the .env file; each backend's agents get only their provider's (workers/runners/registry.py).
AGENT_VARIABLE_PREFIXES = ("ANTHROPIC_", "OPENAI_", "OPENROUTER_", "CLAUDE_CODE_", "AGENTZ_")
AGENT_VARIABLES = ("CODEX_API_KEY",)


def agent_variables_in(source: Mapping[str, str | None]) -> dict[str, str]:
    """The non-empty agent variables of ``source`` (never one of Agent-Z's own secrets)."""
    found = {}
    for key, value in source.items():
        upper = key.upper()
        if not value or upper in SECRET_VARIABLES or upper.startswith("AGENTZ_SECRET"):
            continue
        if upper.startswith(AGENT_VARIABLE_PREFIXES) or upper in AGENT_VARIABLES:
            found[upper] = value
    return found


def _agent_variable_problems(variables: Mapping[str, str]) -> list[tuple[str, str]]:
    return [(key, "must be an http(s) URL") for key, value in sorted(variables.items())
            if key.endswith("_BASE_URL") and not value.startswith(("http://", "https://"))]


def _problem(error: Mapping[str, Any]) -> tuple[str, str]:
    """(variable, message) for one pydantic error, without pydantic's "Value error, " prefix."""
    variable = str(error["loc"][0]).upper() if error["loc"] else "configuration"
    message = str(error["msg"]).removeprefix("Value error, ")
    return variable, message


class InvalidSettings(ConfigError):
    """Several settings are invalid; ``problems`` lists each (variable, message)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__(problems[0][0], problems[0][1])
        self.args = ("; ".join(f"{variable}: {message}" for variable, message in problems),)

    def __str__(self) -> str:
        return str(self.args[0])


def default_host_id(*, hostname: str | None = None, machine_id_file: Path = _MACHINE_ID) -> str:
    """``<hostname>-<machine-id prefix>`` (the machine id when the file exists): stable across restarts.

    The machine id tells apart containers or hosts that share a host name.
    """
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", hostname if hostname is not None else socket.gethostname())
    name = name.strip("-._")[:100] or "localhost"
    try:
        machine = re.sub(r"[^0-9a-f]", "", machine_id_file.read_text().strip().lower())[:12]
    except OSError:
        machine = ""
    return f"{name}-{machine}" if machine else name


SANDBOX_WARNING = "AGENT_SANDBOX=none: agents run unsandboxed on this host and can read its files and credentials"


class Settings(BaseSettings):
    """All of Agent-Z's configuration."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False, env_ignore_empty=True)

    github_app_id: int | None = Field(default=None, ge=1)
    github_private_key: SecretStr | None = None
    github_private_key_path: Path | None = None
    github_webhook_secret: SecretStr | None = None
    github_app_slug: str = "agent-z"
    database_url: str = "sqlite:///.agent-z/agentz.db"
    # SQLite in WAL mode: "normal" loses nothing committed when a process dies, only the newest
    # transactions on an OS crash or power loss; "full" also survives those, at an fsync per commit.
    sqlite_synchronous: Literal["normal", "full"] = "normal"
    github_api_url: str = "https://api.github.com"
    git_url_template: str = "https://github.com/{full_name}.git"
    project_dir: Path = Path(".")
    state_dir: Path = Path(".agent-z")
    prometheus_multiproc_dir: Path | None = None  # default: STATE_DIR/prometheus
    github_repo: str | None = None

    default_backend: Backend = "claude"
    task_lead_backend: Backend | None = None
    reviewer_backend: Backend | None = None
    scheduler_backend: Backend | None = None
    scripted_agent_file: Path | None = None
    agent_timeout_seconds: float = Field(default=1800.0, gt=0)
    agent_sandbox: Literal["bwrap", "none"] = "bwrap"
    agent_network: Literal["allowlist", "open"] = "allowlist"
    agent_network_allow: CommaList = Field(default_factory=list)
    agent_sandbox_paths: CommaList = Field(default_factory=list)
    # Reuse a CLI login of this host: its config folder is mounted read-only into the agent's HOME.
    agent_claude_login_dir: Path | None = None
    agent_codex_login_dir: Path | None = None
    # Every agent call is checked against it first (workers/runners/prices.py estimates the next call).
    max_cost_per_run_usd: float = Field(default=10.0, gt=0)
    allow_workflow_changes: bool = False
    max_file_bytes: int = Field(default=5_000_000, gt=0)
    protected_paths: CommaList = Field(default_factory=list)

    max_parallel_tasks: int = Field(default=2, ge=1)
    max_parallel_per_repo: int | None = Field(default=None, ge=1)
    service_workers: int | None = Field(default=None, ge=1)
    scheduler_batch_size: int = Field(default=10, ge=1)
    scheduler_eligible_labels: CommaList = Field(default_factory=list)
    scheduler_block_labels: CommaList = Field(default_factory=lambda: ["blocked"])
    skip_labels: CommaList = Field(default_factory=lambda: ["ongoing"])
    scheduler_debounce_seconds: float = Field(default=2.0, ge=0)
    scheduler_max_delay_seconds: float = Field(default=10.0, gt=0, le=3600)
    scheduler_prompt_candidates: int = Field(default=25, ge=1, le=500)
    scheduler_prompt_chars: int = Field(default=40_000, ge=5_000, le=2_000_000)
    trigger_label: str = Field(default="agent-z", min_length=1)
    foreign_pr_policy: Literal["adopt", "cancel"] = "adopt"
    trusted_bots: CommaList = Field(default_factory=list)
    scheduler_trust: Literal["maintainers", "anyone"] = "maintainers"

    github_retry_attempts: int = Field(default=3, ge=1, le=20)
    # The GitHub view of runs (labels, status comment, check runs): changes within this
    # window are shown with one edit; GitHub is checked for stale runs this often.
    github_report_coalesce_seconds: float = Field(default=3.0, ge=0, le=300)
    github_report_interval_seconds: float = Field(default=1.0, gt=0, le=300)
    max_review_rounds: int = Field(default=5, ge=1, le=50)
    heartbeat_seconds: float = Field(default=15.0, gt=0)
    lease_seconds: float = Field(default=60.0, gt=0)
    checkpoint_seconds: float = Field(default=120.0, gt=0)
    host_id: str = Field(default_factory=default_host_id)
    reconcile_interval_seconds: float = Field(default=20.0, gt=0)
    resync_interval_seconds: float = Field(default=300.0, gt=0)
    ci_grace_seconds: float = Field(default=600.0, ge=0)
    ci_quiet_seconds: float = Field(default=10.0, ge=0, le=600)
    # A done run keeps its file and module claims until its pull request is merged or closed,
    # so a colliding run builds on the merged change; false releases them at done.
    claims_until_merged: bool = True
    max_infra_attempts: int = Field(default=3, ge=1)
    max_delivery_attempts: int = Field(default=8, ge=1, le=100)
    retain_deliveries_days: int = Field(default=14, ge=1)
    retain_events_days: int = Field(default=90, ge=1)
    retain_run_logs_days: int = Field(default=30, ge=1)
    retain_agent_homes_days: int = Field(default=14, ge=1)

    receiver_host: str = "127.0.0.1"
    receiver_port: int = Field(default=8000, ge=0, le=65535)
    webhook_read_timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    webhook_max_concurrency: int = Field(default=64, ge=1, le=10_000)
    webhook_allowed_cidrs: NetworkList = Field(default_factory=list)
    webhook_trusted_proxies: NetworkList = Field(default_factory=list)
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    _agent_variables: dict[str, str] = PrivateAttr(default_factory=lambda: agent_variables_in(os.environ))

    @field_validator("scheduler_eligible_labels", "scheduler_block_labels", "skip_labels", "trusted_bots",
                     "protected_paths", "agent_network_allow", "agent_sandbox_paths", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("agent_network_allow")
    @classmethod
    def _check_network_allow(cls, value: list[str]) -> list[str]:
        for item in value:
            host, _, port = item.rpartition(":") if ":" in item else (item, "", "443")
            if not host or "/" in item or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{item!r} is not host or host:port")
        return value

    @field_validator("agent_sandbox_paths")
    @classmethod
    def _check_sandbox_paths(cls, value: list[str]) -> list[str]:
        for item in value:
            if not item.startswith("/"):
                raise ValueError(f"{item!r} must be an absolute path")
        return value

    @field_validator("agent_claude_login_dir", "agent_codex_login_dir")
    @classmethod
    def _check_login_dir(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_absolute():
            raise ValueError(f"{str(value)!r} must be an absolute path")
        return value

    @field_validator("webhook_allowed_cidrs", "webhook_trusted_proxies", mode="before")
    @classmethod
    def _parse_networks(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        networks: list[Network] = []
        for part in (part.strip() for part in value.split(",")):
            if not part:
                continue
            try:
                networks.append(ipaddress.ip_network(part))
            except ValueError as exc:
                raise ValueError(f"{part!r} is not a CIDR network such as 192.30.252.0/22 ({exc})") from None
        return networks

    @field_validator("trusted_bots")
    @classmethod
    def _check_bot_logins(cls, value: list[str]) -> list[str]:
        for login in value:
            if not _LOGIN_RE.match(login):
                raise ValueError(f"{login!r} is not a GitHub login such as dependabot[bot]")
        return [login.lower() for login in value]

    @field_validator("protected_paths")
    @classmethod
    def _check_protected_paths(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if ".." in pattern.split("/") or "\\" in pattern:
                raise ValueError(f"{pattern!r}: patterns are repository-relative POSIX globs without '..'")
        return value

    @field_validator("host_id")
    @classmethod
    def _check_host_id(cls, value: str) -> str:
        if not HOST_ID_RE.match(value):
            raise ValueError("must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit")
        return value

    @field_validator("github_repo")
    @classmethod
    def _check_repo(cls, value: str | None) -> str | None:
        if value is not None and value != "" and not _REPO_RE.match(value):
            raise ValueError("must look like owner/name")
        return value or None

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if not value.startswith(("sqlite:", "postgresql")):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return value

    @field_validator("github_api_url")
    @classmethod
    def _check_api_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @field_validator("git_url_template")
    @classmethod
    def _check_git_template(cls, value: str) -> str:
        if "{full_name}" not in value:
            raise ValueError("must contain {full_name}")
        return value

    @model_validator(mode="after")
    def _check_lease(self) -> Settings:
        if self.heartbeat_seconds >= self.lease_seconds:
            raise ValueError("HEARTBEAT_SECONDS must be shorter than LEASE_SECONDS")
        return self

    @classmethod
    def load(cls, env_file: str | Path | None = ".env", **overrides: Any) -> Settings:
        """Read settings and the agent variables; every invalid value is listed at once (InvalidSettings)."""
        problems: list[tuple[str, str]] = []
        settings: Settings | None = None
        try:
            settings = cls(_env_file=env_file, **overrides)  # type: ignore[call-arg, unused-ignore]
        except ValidationError as exc:
            problems += [_problem(error) for error in exc.errors()]
        from_file = dotenv_values(env_file) if env_file is not None and Path(env_file).is_file() else {}
        variables = {**agent_variables_in(from_file), **agent_variables_in(os.environ)}
        problems += _agent_variable_problems(variables)
        if problems:
            raise InvalidSettings(problems)
        assert settings is not None
        settings._agent_variables = variables
        return settings

    # Derived values -----------------------------------------------------

    def agent_variables(self) -> dict[str, str]:
        """Model credentials, model names, base URLs and runner options for the agent CLIs (.env and env)."""
        return dict(self._agent_variables)

    def backend_for(self, role: str) -> Backend:
        """The agent backend configured for a role (task_lead, reviewer, scheduler)."""
        specific = {
            "task_lead": self.task_lead_backend,
            "developer": self.task_lead_backend,
            "reviewer": self.reviewer_backend,
            "scheduler": self.scheduler_backend,
        }.get(role)
        return specific or self.default_backend

    @property
    def workers(self) -> int:
        return self.service_workers or self.max_parallel_tasks

    @property
    def per_repo_limit(self) -> int:
        return self.max_parallel_per_repo or self.max_parallel_tasks

    def private_key_pem(self) -> str:
        """The App's PEM private key, from the variable or the key file."""
        if self.github_private_key is not None:
            return self.github_private_key.get_secret_value().replace("\\n", "\n")
        if self.github_private_key_path is not None:
            try:
                return self.github_private_key_path.read_text()
            except OSError as exc:
                raise ConfigError("GITHUB_PRIVATE_KEY_PATH", f"cannot read key file: {exc.strerror}") from None
        raise ConfigError("GITHUB_PRIVATE_KEY", "set GITHUB_PRIVATE_KEY or GITHUB_PRIVATE_KEY_PATH")

    def require_app(self) -> None:
        """Fail unless the App credentials needed to call GitHub are present."""
        if self.github_app_id is None:
            raise ConfigError("GITHUB_APP_ID", "required to call GitHub")
        self.private_key_pem()

    def webhook_secret(self) -> bytes:
        """The webhook secret, required by the receiver."""
        if self.github_webhook_secret is None or not self.github_webhook_secret.get_secret_value():
            raise ConfigError("GITHUB_WEBHOOK_SECRET", "required to verify webhook signatures")
        return self.github_webhook_secret.get_secret_value().encode()

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def metrics_dir(self) -> Path:
        """Where ``agentz serve``'s processes keep their Prometheus counters (wiped at every start)."""
        return self.prometheus_multiproc_dir or self.state_dir / "prometheus"
