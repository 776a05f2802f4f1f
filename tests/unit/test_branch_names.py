"""Branch names derived from issue titles are safe for git, shells and URLs."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.worktrees import MAX_BRANCH_LENGTH, branch_name, checkpoint_ref

SAFE = re.compile(r"^agent-z/issue-[0-9]+(-[a-z0-9]+(-[a-z0-9]+)*)?$")


@pytest.mark.parametrize(
    ("number", "title", "expected"),
    [
        (1, "Fix the login bug", "agent-z/issue-1-fix-the-login-bug"),
        (2, "../../x", "agent-z/issue-2-x"),
        (3, "-rf", "agent-z/issue-3-rf"),
        (4, "a\x00b\x1b[31mc", "agent-z/issue-4-a-b-31mc"),
        (5, "; rm -rf /", "agent-z/issue-5-rm-rf"),
        (6, "Crème brûlée ünïcode ✓", "agent-z/issue-6-creme-brulee-unicode"),
        (7, "日本語のみ", "agent-z/issue-7"),
        (8, "", "agent-z/issue-8"),
        (9, "refs/heads/main..HEAD@{1}", "agent-z/issue-9-refs-heads-main-head-1"),
        (10, "$(curl evil) `id`", "agent-z/issue-10-curl-evil-id"),
    ],
)
def test_titles_become_safe_branch_names(number: int, title: str, expected: str) -> None:
    assert branch_name(number, title) == expected


def test_long_titles_are_cut_without_a_trailing_dash() -> None:
    name = branch_name(123, "word " * 40)
    assert len(name) <= MAX_BRANCH_LENGTH
    assert not name.endswith("-")


def test_issue_number_must_be_positive() -> None:
    with pytest.raises(ValueError, match="issue number must be positive"):
        branch_name(0, "x")


def test_checkpoint_refs_reject_path_tricks() -> None:
    assert checkpoint_ref("abc123") == "refs/agent-z/runs/abc123"
    with pytest.raises(ValueError, match="invalid run id"):
        checkpoint_ref("../heads/main")


@given(st.integers(min_value=1, max_value=10**9), st.text())
def test_any_title_gives_a_safe_name(number: int, title: str) -> None:
    name = branch_name(number, title)
    assert SAFE.match(name), name
    assert ".." not in name
    assert len(name) <= MAX_BRANCH_LENGTH
