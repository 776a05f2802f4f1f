"""Issue titles cannot inject into branch names: git itself accepts every name we derive.

``git check-ref-format --branch`` is the judge (a real git, no shell), and every
name stays inside Agent-Z's own ``agent-z/issue-<n>-`` namespace.
"""

from __future__ import annotations

import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.worktrees import MAX_BRANCH_LENGTH, branch_name

HOSTILE_TITLES = [
    "../../../etc/passwd",
    "..",
    "a..b",
    "-d",
    "--force",
    "-",
    "refs/heads/main",
    "refs/heads/x",
    "HEAD",
    "@",
    "@{-1}",
    "main@{upstream}",
    "x~1^2:y?z*[a]\\b",
    "~^:?*[\\",
    "branch.lock",
    "x.lock/y",
    "/leading/and/trailing/",
    "a//b",
    ".hidden",
    "end.",
    "tab\there",
    "new\nline\rcarriage",
    "nul\x00byte\x7fdel\x1b[31mred",
    "   ",
    "",
    "$(rm -rf ~) `id` ; | & > < ' \"",
    "x" * 5000,
    "word " * 400,
    "Ünïcödé títle — with “quotes” and emoji 🚀",
    "日本語のタイトル",
    "\u202eevil\u202c right-to-left override",
    "zero\u200bwidth\u00a0space",
    "ﬁligature ß straße İstanbul",
    "%2e%2e%2f encoded",
]


def assert_safe(number: int, title: str) -> None:
    name = branch_name(number, title)
    assert name.startswith(f"agent-z/issue-{number}")
    assert len(name) <= MAX_BRANCH_LENGTH
    assert name == f"agent-z/issue-{number}" or name.startswith(f"agent-z/issue-{number}-")
    result = subprocess.run(["git", "check-ref-format", "--branch", name], capture_output=True, text=True, check=False)
    assert result.returncode == 0, (title, name, result.stderr)
    assert result.stdout.strip() == name  # git reads it as this very branch, nothing expanded


@pytest.mark.parametrize("title", HOSTILE_TITLES)
def test_hostile_titles_give_names_git_accepts_in_our_namespace(title: str) -> None:
    assert_safe(42, title)


@settings(max_examples=40, deadline=None)
@given(number=st.integers(1, 2**31 - 1), title=st.text(max_size=300))
def test_any_title_gives_a_name_git_accepts_in_our_namespace(number: int, title: str) -> None:
    assert_safe(number, title)
