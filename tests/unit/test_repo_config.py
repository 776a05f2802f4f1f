"""The per-repository configuration file: model, schema, line-numbered errors, hostile YAML, merging."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from agentz_app.cli import cli
from agentz_app.config import Settings
from agentz_app.repo_config import (
    CHECK_NAME,
    MAX_CONFIG_BYTES,
    InvalidRepoConfig,
    RepoConfig,
    config_check_payload,
    effective_settings,
    json_schema,
    parse_config,
)
from agentz_app.reporting.checks import check_name
from workers.content_policy import Change, ContentPolicy, check_changes

FULL = """\
version: 1
backends:
  default: codex
  reviewer: claude
labels:
  trigger: robot
  eligible: [ready]
  block: [wip, blocked]
  skip: [busy]
parallelism: 3
setup:
  - pip install -e .
  - npm ci
test: python -m pytest -q
protected_paths: [migrations/**, "*.lock"]
allow_workflow_changes: false
max_cost_per_run_usd: 2.5
"""


def problems_of(text: str | bytes) -> list[tuple[int | None, str, str]]:
    with pytest.raises(InvalidRepoConfig) as raised:
        parse_config(text)
    return [(p.line, p.field, p.message) for p in raised.value.problems]


def host(**overrides: object) -> Settings:
    return Settings.load(None, **overrides)


def test_a_complete_file_is_read_into_the_model() -> None:
    config = parse_config(FULL)
    assert config.backends.default == "codex"
    assert config.backends.reviewer == "claude"
    assert config.labels.block == ["wip", "blocked"]
    assert config.parallelism == 3
    assert config.setup == ["pip install -e .", "npm ci"]
    assert config.test == "python -m pytest -q"
    assert config.protected_paths == ["migrations/**", "*.lock"]
    assert config.max_cost_per_run_usd == 2.5


@pytest.mark.parametrize("text", ["", "# nothing configured\n", "---\n"])
def test_an_empty_file_is_the_default_configuration(text: str) -> None:
    assert parse_config(text) == RepoConfig()


def test_every_problem_is_listed_with_its_line() -> None:
    text = "backends:\n  reviewer: gpt\nsetup:\n  - ok\n  - 42\nparallelism: 0\ncolour: red\n"
    assert problems_of(text) == [
        (2, "backends.reviewer", "Input should be 'claude', 'codex' or 'opencode'"),
        (5, "setup.1", "Input should be a valid string"),
        (6, "parallelism", "Input should be greater than or equal to 1"),
        (7, "colour", "Extra inputs are not permitted"),
    ]


def test_broken_yaml_is_reported_at_its_line() -> None:
    [(line, _, message)] = problems_of("setup:\n  - a\n  b: [\n")
    assert line is not None
    assert line >= 3
    assert message


def test_a_list_instead_of_a_mapping_is_refused() -> None:
    assert problems_of("- setup\n") == [(1, "", "the file must be a mapping of settings")]


def test_a_protected_path_cannot_climb_out_of_the_repository() -> None:
    [(line, field, message)] = problems_of("protected_paths:\n  - ../etc/passwd\n")
    assert (line, field) == (2, "protected_paths.0")
    assert "'..'" in message


def test_a_billion_laughs_is_refused_before_anything_is_expanded() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    bomb += "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    assert problems_of(bomb) == [(1, "", "anchors and aliases are not accepted")]


def test_deep_nesting_is_refused_without_recursing() -> None:
    deep = "setup: " + "[" * 30_000 + "]" * 30_000 + "\n"
    [(line, _, message)] = problems_of(deep)
    assert line == 1
    assert "nested deeper" in message


def test_too_many_values_are_refused() -> None:
    many = "setup: [" + ", ".join(["a"] * 6000) + "]\n"
    assert "more than" in problems_of(many)[0][2]


def test_an_oversized_file_is_refused_unread() -> None:
    [(line, _, message)] = problems_of(b"#" * (MAX_CONFIG_BYTES + 1))
    assert line is None
    assert "limit" in message


@pytest.mark.parametrize("text", ["a: !!python/object/apply:os.system [echo hi]\n", "!!set {a, b}\n",
                                  "a: 1\n---\nb: 2\n"])
def test_unsafe_tags_and_several_documents_are_refused(text: str) -> None:
    assert problems_of(text)


def test_non_utf8_content_is_refused() -> None:
    assert "not UTF-8" in problems_of(b"setup: [\xff]\n")[0][2]


def test_the_shipped_schema_accepts_the_full_example_and_rejects_unknown_keys() -> None:
    schema = json_schema()
    jsonschema.validate(json.loads(json.dumps(parse_config(FULL).model_dump(mode="json"))), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"colour": "red"}, schema)


def test_the_config_check_has_an_agent_z_name() -> None:
    assert check_name("config") == CHECK_NAME


def test_an_invalid_file_makes_a_failing_check_with_line_annotations() -> None:
    with pytest.raises(InvalidRepoConfig) as raised:
        parse_config("parallelism: lots\n")
    payload = config_check_payload("a" * 40, raised.value.problems)
    assert payload["conclusion"] == "failure"
    assert payload["name"] == "Agent-Z / config"
    [note] = payload["output"]["annotations"]
    assert note["path"] == ".github/agent-z.yml"
    assert note["start_line"] == 1
    assert "parallelism" in note["message"]


# Merging with the host's settings -------------------------------------------------


def test_backends_and_labels_are_the_repositorys_choice() -> None:
    settings = effective_settings(host(default_backend="claude", reviewer_backend="opencode"), parse_config(FULL))
    assert settings.backend_for("developer") == "codex"
    assert settings.backend_for("reviewer") == "claude"
    assert settings.trigger_label == "robot"
    assert settings.skip_labels == ["busy"]
    assert settings.scheduler_block_labels == ["wip", "blocked"]


def test_a_repository_cannot_raise_the_budget_or_parallelism_above_the_hosts() -> None:
    generous = RepoConfig(parallelism=50, max_cost_per_run_usd=100.0)
    settings = effective_settings(host(max_cost_per_run_usd=1.0, max_parallel_per_repo=2), generous)
    assert settings.max_cost_per_run_usd == 1.0
    assert settings.per_repo_limit == 2


def test_a_repository_can_lower_the_budget_and_set_one_where_the_host_has_none() -> None:
    frugal = RepoConfig(max_cost_per_run_usd=0.5, parallelism=1)
    assert effective_settings(host(max_cost_per_run_usd=1.0), frugal).max_cost_per_run_usd == 0.5
    assert effective_settings(host(), frugal).max_cost_per_run_usd == 0.5
    assert effective_settings(host(max_parallel_tasks=4), frugal).per_repo_limit == 1


def test_a_repository_cannot_allow_workflow_changes_the_host_forbids() -> None:
    change = Change(".github/workflows/ci.yml", "100644", 10, b"on: push\n")
    policy = ContentPolicy.from_settings(host(allow_workflow_changes=False),
                                         repo=RepoConfig(allow_workflow_changes=True), environ={})
    assert [v.rule for v in check_changes([change], policy)] == ["workflow"]


def test_a_repository_can_forbid_workflow_changes_and_protect_more_paths() -> None:
    repo = RepoConfig(allow_workflow_changes=False, protected_paths=["migrations/**"])
    policy = ContentPolicy.from_settings(host(allow_workflow_changes=True, protected_paths="secrets"), repo=repo,
                                         environ={})
    assert not policy.allow_workflow_changes
    assert policy.protected_paths == ("secrets", "migrations/**")
    found = check_changes([Change("migrations/0001.sql", "100644", 3, b"x\n"), Change("secrets/a", "100644", 1, b"x")],
                          policy)
    assert [v.rule for v in found] == ["protected_path", "protected_path"]


def test_without_a_file_the_hosts_settings_apply_unchanged() -> None:
    settings = host(max_cost_per_run_usd=3.0)
    assert effective_settings(settings, None) is settings
    assert ContentPolicy.from_settings(settings, environ={}) == ContentPolicy.from_settings(settings, repo=None,
                                                                                           environ={})


# The CLI --------------------------------------------------------------------------


def test_config_schema_prints_the_json_schema_without_any_host_settings(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--env-file", str(tmp_path / "missing.env"), "config", "schema"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["title"] == "Agent-Z repository configuration"


def test_config_check_prints_line_numbered_errors_and_fails(tmp_path: Path) -> None:
    bad = tmp_path / "agent-z.yml"
    bad.write_text("version: 1\ntest: [a, b]\n")
    result = CliRunner().invoke(cli, ["config", "check", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:2: test: Input should be a valid string" in result.output


def test_config_check_accepts_a_valid_file(tmp_path: Path) -> None:
    good = tmp_path / "agent-z.yml"
    good.write_text(FULL)
    result = CliRunner().invoke(cli, ["config", "check", str(good)])
    assert result.exit_code == 0
    assert "valid" in result.output
