from __future__ import annotations

from pathlib import Path

import pytest

from agentz_app.config import InvalidSettings, Settings, default_host_id
from agentz_app.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


def test_defaults_match_the_design() -> None:
    settings = Settings.load(None)
    assert settings.database_url == "sqlite:///.agent-z/agentz.db"
    assert settings.sqlite_synchronous == "normal"
    assert settings.github_api_url == "https://api.github.com"
    assert settings.default_backend == "claude"
    assert settings.max_parallel_tasks == 2
    assert settings.scheduler_batch_size == 10
    assert (settings.scheduler_prompt_candidates, settings.scheduler_prompt_chars) == (25, 40_000)
    assert settings.scheduler_max_delay_seconds == 10.0
    assert settings.scheduler_eligible_labels == []
    assert settings.scheduler_block_labels == ["blocked"]
    assert settings.skip_labels == ["ongoing"]
    assert settings.github_retry_attempts == 3
    assert settings.max_review_rounds == 5
    assert settings.trigger_label == "agent-z"
    assert settings.max_cost_per_run_usd == 10.0


def test_the_documented_example_file_loads() -> None:
    settings = Settings.load(EXAMPLE)
    assert settings.github_app_id is None
    assert settings.skip_labels == ["ongoing"]


def test_every_setting_is_documented_in_the_example() -> None:
    text = EXAMPLE.read_text()
    missing = [name.upper() for name in Settings.model_fields if f"{name.upper()}=" not in text]
    assert missing == []


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MAX_PARALLEL_TASKS", "two"),
        ("MAX_PARALLEL_TASKS", "0"),
        ("DEFAULT_BACKEND", "gpt"),
        ("DATABASE_URL", "mysql://x"),
        ("SQLITE_SYNCHRONOUS", "off"),
        ("GITHUB_REPO", "not a repo"),
        ("GIT_URL_TEMPLATE", "https://example.invalid/repo.git"),
        ("MAX_COST_PER_RUN_USD", "-1"),
        ("SCHEDULER_MAX_DELAY_SECONDS", "0"),
        ("SCHEDULER_PROMPT_CANDIDATES", "0"),
        ("SCHEDULER_PROMPT_CHARS", "1000"),
    ],
)
def test_a_bad_value_names_its_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        Settings.load(None)
    assert info.value.variable == variable
    assert str(info.value).startswith(variable)


def test_lists_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHEDULER_ELIGIBLE_LABELS", "bug, good first issue ,")
    assert Settings.load(None).scheduler_eligible_labels == ["bug", "good first issue"]


def test_secrets_are_hidden_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", "s3cret-value")
    settings = Settings.load(None)
    assert "s3cret-value" not in repr(settings)
    assert settings.webhook_secret() == b"s3cret-value"


def test_missing_key_file_is_a_config_error(tmp_path: Path) -> None:
    settings = Settings.load(None, github_app_id=1, github_private_key_path=tmp_path / "absent.pem")
    with pytest.raises(ConfigError) as info:
        settings.require_app()
    assert info.value.variable == "GITHUB_PRIVATE_KEY_PATH"


def test_per_role_backends_fall_back_to_the_default() -> None:
    settings = Settings.load(None, default_backend="codex", reviewer_backend="claude")
    assert settings.backend_for("task_lead") == "codex"
    assert settings.backend_for("reviewer") == "claude"


def test_every_invalid_variable_is_listed_at_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MAX_PARALLEL_TASKS", "two")
    monkeypatch.setenv("RECEIVER_PORT", "99999")
    env_file = tmp_path / ".env"
    env_file.write_text("DEFAULT_BACKEND=gpt\nOPENAI_BASE_URL=api.openai.com\n")
    with pytest.raises(InvalidSettings) as info:
        Settings.load(env_file)
    named = [variable for variable, _ in info.value.problems]
    assert named == ["DEFAULT_BACKEND", "MAX_PARALLEL_TASKS", "RECEIVER_PORT", "OPENAI_BASE_URL"]
    assert all(variable in str(info.value) for variable in named)
    assert "Value error" not in str(info.value)


def test_login_folders_must_be_absolute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_CLAUDE_LOGIN_DIR", "~/.claude")
    with pytest.raises(ConfigError) as info:
        Settings.load(None)
    assert info.value.variable == "AGENT_CLAUDE_LOGIN_DIR"


def test_host_id_defaults_to_host_name_and_machine_id(tmp_path: Path) -> None:
    machine_id = tmp_path / "machine-id"
    machine_id.write_text("3F2A9C1B0D4E5F60718293A4B5C6D7E8\n")
    assert default_host_id(hostname="build box/1", machine_id_file=machine_id) == "build-box-1-3f2a9c1b0d4e"
    assert default_host_id(hostname="web", machine_id_file=tmp_path / "absent") == "web"
    assert Settings.load(None).host_id == Settings.load(None).host_id  # stable across loads


@pytest.mark.parametrize("value", ["has space", "a/b", "a:b", "-leading", "x" * 129])
def test_a_bad_host_id_names_the_variable(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("HOST_ID", value)
    with pytest.raises(ConfigError) as caught:
        Settings.load(None)
    assert "HOST_ID" in str(caught.value)


def test_prometheus_files_live_under_state_dir_unless_configured(tmp_path: Path) -> None:
    assert Settings.load(None, state_dir=tmp_path).metrics_dir == tmp_path / "prometheus"
    assert Settings.load(EXAMPLE, state_dir=tmp_path).metrics_dir == tmp_path / "prometheus"  # empty value
    chosen = tmp_path / "metrics"
    assert Settings.load(None, prometheus_multiproc_dir=chosen).metrics_dir == chosen
