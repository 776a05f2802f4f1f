"""The content policy's rules, one by one, and its rendering for check runs and comments."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentz_app.config import Settings
from agentz_app.errors import ConfigError
from agentz_app.reporting.checks import chunks
from tests import secret_samples as samples
from workers.content_policy import (
    Change,
    ContentPolicy,
    Violation,
    check_changes,
    path_matches,
    symlink_escape,
    violation_annotations,
    violations_markdown,
)

POLICY = ContentPolicy(max_file_bytes=1000, allow_workflow_changes=False, protected_paths=(),
                       secret_values=(samples.WEBHOOK_SECRET,))


def _file(path: str, content: bytes = b"print('hi')\n", mode: str = "100644") -> Change:
    return Change(path, mode, len(content), content)


def _rules(*changes: Change, policy: ContentPolicy = POLICY) -> list[tuple[str, str]]:
    return [(v.path, v.rule) for v in check_changes(changes, policy)]


def test_an_ordinary_change_passes() -> None:
    assert check_changes([_file("src/app.py"), _file("README.md", b"# hi\n"),
                          Change("old.py", "000000", 0, None)], POLICY) == []


def test_secrets_are_reported_with_their_line_and_kind_but_never_their_value() -> None:
    content = f"a = 1\nTOKEN = '{samples.GITHUB_TOKEN}'\n\nKEY = '{samples.ANTHROPIC_KEY}'\n".encode()
    violations = check_changes([_file("config.py", content)], POLICY)
    assert [(v.rule, v.line) for v in violations] == [("secret", 2), ("secret", 4)]
    assert violations[0].detail == "contains a GitHub token (ghs_…)"
    assert all(samples.GITHUB_TOKEN not in v.detail and samples.ANTHROPIC_KEY not in v.detail for v in violations)


def test_binary_content_is_scanned_too() -> None:
    blob = b"\x00\xff\x89PNG\r\n" + samples.AWS_KEY_ID.encode() + b"\x00\x01" + samples.WEBHOOK_SECRET.encode()
    assert [v.detail for v in check_changes([_file("logo.png", blob)], POLICY)] == [
        "contains an AWS access key id (AKIA…)", "contains the value of a configured secret"]


def test_jwts_and_example_urls_with_passwords_are_not_policy_violations() -> None:
    content = f"TEST_JWT = '{samples.JWT}'\nURL = 'postgresql://user:pass@localhost/db'\n".encode()
    assert check_changes([_file("tests/test_auth.py", content)], POLICY) == []


def test_a_file_full_of_secrets_reports_a_bounded_number() -> None:
    content = "\n".join(f"t{i} = '{samples.GITHUB_TOKEN[:-2]}{i:02d}'" for i in range(60)).encode()
    violations = check_changes([_file("tokens.py", content)], ContentPolicy(10_000, False, (), ()))
    assert len(violations) == 21
    assert violations[-1].detail == "more secrets in this file are not listed"


@pytest.mark.parametrize(("path", "target", "escapes"), [
    ("link", "/etc/passwd", True),
    ("a/b/link", "../../../etc/passwd", True),
    ("a/b/link", "../../README.md", False),
    ("a/b/link", "../c/../../x", False),
    ("a/link", "../../x", True),
    ("link", "./../x", True),
    ("docs/link", "../.git/config", True),
    ("link", "", True),
    ("link", "C:/Windows", True),
    ("dir/link", "sibling.txt", False),
])
def test_symlinks_are_judged_from_their_own_directory(path: str, target: str, escapes: bool) -> None:
    assert (symlink_escape(path, target) is not None) is escapes
    assert bool(check_changes([_file(path, target.encode(), "120000")], POLICY)) is escapes


def test_workflow_changes_and_deletions_need_the_setting() -> None:
    changes = [_file(".github/workflows/ci.yml", b"on: push\n"), Change(".github/workflows/old.yml", "000000", 0, None),
               _file(".github/dependabot.yml", b"version: 2\n")]
    assert _rules(*changes) == [(".github/workflows/ci.yml", "workflow"), (".github/workflows/old.yml", "workflow")]
    allowed = ContentPolicy(1000, True, (), ())
    assert check_changes(changes, allowed) == []


def test_files_over_the_limit_are_refused_even_unread() -> None:
    assert _rules(Change("big.bin", "100644", 1001, None)) == [("big.bin", "size")]
    assert _rules(Change("ok.bin", "100644", 1000, b"x" * 1000)) == []


def test_gitlinks_are_embedded_repositories() -> None:
    assert _rules(Change("vendor/lib", "160000", 0, None)) == [("vendor/lib", "embedded_repository")]


def test_protected_paths_cover_changes_and_deletions() -> None:
    policy = ContentPolicy(1000, False, ("deploy/**", "*.pem", "/Makefile"), ())
    changes = [_file("deploy/k8s/app.yml"), Change("certs/server.pem", "000000", 0, None), _file("Makefile"),
               _file("src/Makefile"), _file("src/deploy.py")]
    assert _rules(*changes, policy=policy) == [("deploy/k8s/app.yml", "protected_path"),
                                               ("certs/server.pem", "protected_path"), ("Makefile", "protected_path")]


@pytest.mark.parametrize(("pattern", "path", "matches"), [
    ("*.pem", "a/b/key.pem", True),
    ("*.pem", "key.pem.txt", False),
    ("secrets", "config/secrets/db.yml", True),
    ("deploy/**", "deploy/a/b/c.yml", True),
    ("deploy/**", "src/deploy/x", False),
    ("**/migrations/*.py", "app/db/migrations/0001.py", True),
    ("**/migrations/*.py", "migrations/0001.py", True),
    ("**/migrations/*.py", "app/migrations/sub/0001.py", False),
    ("src/*.py", "src/a.py", True),
    ("src/*.py", "src/sub/a.py", False),
    ("/Makefile", "Makefile", True),
    ("/Makefile", "sub/Makefile", False),
    ("docs/", "docs/index.md", True),
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("A.txt", "a.txt", False),
])
def test_protected_path_globs(pattern: str, path: str, matches: bool) -> None:
    assert path_matches(pattern, path) is matches


def test_policy_from_settings(tmp_path: Path) -> None:
    settings = Settings.load(None, state_dir=tmp_path, allow_workflow_changes="true", max_file_bytes="42",
                             protected_paths="deploy/**, *.pem", github_webhook_secret=samples.WEBHOOK_SECRET)
    policy = ContentPolicy.from_settings(settings, environ={"OPENAI_API_KEY": samples.OPENAI_KEY})
    assert policy.allow_workflow_changes
    assert policy.max_file_bytes == 42
    assert policy.protected_paths == ("deploy/**", "*.pem")
    assert {samples.WEBHOOK_SECRET, samples.OPENAI_KEY} <= set(policy.secret_values)


def test_defaults_refuse_workflows_and_files_over_5_mb(tmp_path: Path) -> None:
    settings = Settings.load(None, state_dir=tmp_path)
    policy = ContentPolicy.from_settings(settings, environ={})
    assert (policy.allow_workflow_changes, policy.max_file_bytes, policy.protected_paths) == (False, 5_000_000, ())


@pytest.mark.parametrize(("variable", "value"), [("MAX_FILE_BYTES", "0"), ("MAX_FILE_BYTES", "lots"),
                                                  ("PROTECTED_PATHS", "../outside/**"),
                                                  ("ALLOW_WORKFLOW_CHANGES", "perhaps")])
def test_bad_policy_settings_name_the_variable(tmp_path: Path, variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.load(None, state_dir=tmp_path, **{variable.lower(): value})


def test_annotations_fail_the_check_and_name_the_rule() -> None:
    violations = [Violation("a.py", "secret", "contains a GitHub token (ghs_…)", 3),
                  Violation("big.bin", "size", "too big")]
    assert violation_annotations(violations) == [
        {"path": "a.py", "start_line": 3, "end_line": 3, "annotation_level": "failure",
         "title": "Content policy: secret", "message": "contains a GitHub token (ghs_…)"},
        {"path": "big.bin", "start_line": 1, "end_line": 1, "annotation_level": "failure",
         "title": "Content policy: size", "message": "too big"},
    ]
    many = violation_annotations([Violation(f"f{i}", "size", "x") for i in range(120)])
    assert [len(batch) for batch in chunks(many)] == [50, 50, 20]


def test_markdown_table_cannot_be_broken_by_hostile_paths() -> None:
    hostile = "a|b\n| x | y |<img src=x onerror=alert(1)> @org/team `code`.py"
    table = violations_markdown([Violation(hostile, "secret", "contains a JSON Web Token", 2)])
    rows = [line for line in table.splitlines() if line.startswith("|")]
    assert len(rows) == 3
    assert rows[2].count("|") == 4
    assert "<img" not in table
    assert "&lt;img" in table
    assert ":2</code>" in rows[2]
    assert violations_markdown([]) == "No content policy violations."


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000), st.sampled_from(["100644", "100755", "120000", "160000", "000000"]),
       st.text(alphabet="ab./-_*", min_size=1, max_size=30))
def test_any_change_is_checked_without_error_and_deterministically(content: bytes, mode: str, path: str) -> None:
    change = Change(path, mode, len(content), content)
    first = check_changes([change], POLICY)
    assert first == check_changes([change], POLICY)
    assert all(v.rule in ("secret", "symlink", "workflow", "size", "protected_path", "embedded_repository")
               for v in first)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=500), st.binary(max_size=500), st.sampled_from([v for _, v in samples.SHAPED]))
def test_a_shaped_secret_in_any_binary_file_is_found(before: bytes, after: bytes, secret: str) -> None:
    content = before + b"\n" + secret.encode() + b"\n" + after
    violations = check_changes([_file("blob.bin", content)], POLICY)
    assert any(v.rule == "secret" for v in violations)
    assert all(secret not in v.detail for v in violations)


@pytest.mark.parametrize("unit", [b"-----BEGIN PRIVATE KEY-----", b"eyJ", b"ghp_", b"\x00\xff", b"sk-a1b2",
                                  b"../", b"a" * 63 + b"\n"])
def test_hostile_content_of_megabytes_is_checked(unit: bytes) -> None:
    content = unit * (2_000_000 // len(unit))
    policy = ContentPolicy(2_000_000, False, ("**/a*a*a*a*a*b",), (samples.WEBHOOK_SECRET,))
    check_changes([Change("a" * 200 + "/" + "a" * 200, "100644", len(content), content)], policy)
