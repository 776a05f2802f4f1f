"""A prompt-injected agent tries to smuggle credentials and CI changes out through its commit.

Each attack is made in a real git worktree; the change is read back from git the way the
trusted coordinator reads it (``git diff --raw`` against the base, blobs by id) and checked.
"""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path

import pytest

from agentz_app.config import Settings
from tests import secret_samples as samples
from workers.content_policy import Change, ContentPolicy, Violation, check_changes, violations_markdown


def _git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(repo)}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env,
                          input=stdin).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    _git(path, "init", "-q", "-b", "main")
    (path / "README.md").write_text("# app\n")
    (path / ".github" / "workflows").mkdir(parents=True)
    (path / ".github" / "workflows" / "ci.yml").write_text("on: push\n")
    _git(path, "add", "-A")
    _git(path, "commit", "-qm", "base")
    return path


def _changes(repo: Path, limit: int) -> list[Change]:
    """What the agent changed since ``main``, as trusted code reads it from git."""
    _git(repo, "add", "-A")
    raw = _git(repo, "diff", "--cached", "--raw", "-z", "--no-renames", "--no-abbrev", "main").split(b"\0")
    changes = []
    for header, path in zip(raw[0::2], raw[1::2], strict=False):
        if not header:
            continue
        _, new_mode, _, new_id, _ = header.decode().lstrip(":").split(" ")
        if new_mode in ("000000", "160000"):  # deleted, or a gitlink (a commit id, no blob)
            changes.append(Change(path.decode(), new_mode, 0, None))
            continue
        size = int(_git(repo, "cat-file", "-s", new_id))
        content = _git(repo, "cat-file", "blob", new_id) if size <= limit else None
        changes.append(Change(path.decode(), new_mode, size, content))
    return changes


@pytest.fixture
def policy(tmp_path: Path) -> ContentPolicy:
    settings = Settings.load(None, state_dir=tmp_path / "state", github_webhook_secret=samples.WEBHOOK_SECRET,
                             github_private_key=samples.rsa_pem(),
                             database_url=f"postgresql://agentz:{samples.DB_PASSWORD}@db/agentz")
    return ContentPolicy.from_settings(settings, environ={"ANTHROPIC_API_KEY": samples.ANTHROPIC_KEY})


def _by_rule(violations: list[Violation]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for violation in violations:
        found.setdefault(violation.rule, set()).add(violation.path)
    return found


def test_the_app_key_env_file_workflow_and_symlinks_out_are_all_refused(repo: Path, policy: ContentPolicy) -> None:
    (repo / "app.pem").write_text(samples.rsa_pem())
    (repo / ".env").write_text(f"GITHUB_WEBHOOK_SECRET={samples.WEBHOOK_SECRET}\n"
                               f"DATABASE_URL=postgresql://agentz:{samples.DB_PASSWORD}@db/agentz\n"
                               f"ANTHROPIC_API_KEY={samples.ANTHROPIC_KEY}\n")
    (repo / ".github" / "workflows" / "exfiltrate.yml").write_text("on: push\njobs: {}\n")
    (repo / "passwd").symlink_to("/etc/passwd")
    (repo / "docs").mkdir()
    (repo / "docs" / "up").symlink_to("../../../home")
    (repo / "src.py").write_text("print('the actual fix')\n")
    violations = check_changes(_changes(repo, policy.max_file_bytes), policy)
    assert _by_rule(violations) == {
        "secret": {"app.pem", ".env"},
        "workflow": {".github/workflows/exfiltrate.yml"},
        "symlink": {"passwd", "docs/up"},
    }
    report = violations_markdown(violations) + "".join(v.detail for v in violations)
    for secret in (samples.WEBHOOK_SECRET, samples.DB_PASSWORD, samples.ANTHROPIC_KEY,
                   *samples.pem_body_lines(samples.rsa_pem())):
        assert secret not in report


def test_a_partial_or_encoded_copy_of_a_secret_is_still_refused(repo: Path, policy: ContentPolicy) -> None:
    lines = samples.pem_body_lines(samples.rsa_pem())
    (repo / "fixture.txt").write_text("data:\n" + lines[3] + "\n")  # one line of the App key
    (repo / "blob.b64").write_text(base64.b64encode(b"prefix " + samples.WEBHOOK_SECRET.encode()).decode())
    (repo / "hex.txt").write_text(samples.ANTHROPIC_KEY.encode().hex())
    (repo / "image.png").write_bytes(b"\x89PNG\x00\x00" + samples.DB_PASSWORD.encode() + b"\xff\x00")
    violations = check_changes(_changes(repo, policy.max_file_bytes), policy)
    assert _by_rule(violations) == {"secret": {"fixture.txt", "blob.b64", "hex.txt", "image.png"}}
    assert {v.detail for v in violations} == {
        "contains the value of a configured secret",
        "contains the value of a configured secret, base64-encoded",
        "contains the value of a configured secret, hex-encoded",
    }


def test_deleting_the_ci_workflow_is_a_workflow_change(repo: Path, policy: ContentPolicy) -> None:
    (repo / ".github" / "workflows" / "ci.yml").unlink()
    assert _by_rule(check_changes(_changes(repo, policy.max_file_bytes), policy)) == {
        "workflow": {".github/workflows/ci.yml"}}


def test_an_embedded_repository_is_refused(repo: Path, policy: ContentPolicy) -> None:
    inner = repo / "vendor"
    inner.mkdir()
    _git(inner, "init", "-q")
    (inner / "x").write_text("x\n")
    _git(inner, "add", "-A")
    _git(inner, "commit", "-qm", "inner")
    assert _by_rule(check_changes(_changes(repo, policy.max_file_bytes), policy)) == {
        "embedded_repository": {"vendor"}}


def test_a_huge_file_is_refused_without_being_read(repo: Path, tmp_path: Path) -> None:
    (repo / "dump.sql").write_bytes(b"x" * 4096)
    small = ContentPolicy(max_file_bytes=1024, allow_workflow_changes=False, protected_paths=(), secret_values=())
    changes = _changes(repo, small.max_file_bytes)
    assert changes == [Change("dump.sql", "100644", 4096, None)]
    assert _by_rule(check_changes(changes, small)) == {"size": {"dump.sql"}}
