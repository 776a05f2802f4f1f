"""Dependency and pull-request reference parsing, table-driven."""

from __future__ import annotations

import pytest

from agentz_app.domain.dependencies import IssueRef, closing_references, parse_dependencies
from agentz_app.domain.gates import IssueView, check_dependencies
from agentz_app.store.snapshots import linked_issues

REPO = "acme/app"


def refs(*pairs: tuple[str, int]) -> list[IssueRef]:
    return [IssueRef(repo, number) for repo, number in pairs]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Blocked by #12", refs((REPO, 12))),
        ("blocked by #12", refs((REPO, 12))),
        ("BLOCKED BY #12", refs((REPO, 12))),
        ("Depends on #3", refs((REPO, 3))),
        ("This depends on #3 being merged", refs((REPO, 3))),
        ("Requires #7", refs((REPO, 7))),
        ("We need this: requires: #7", refs((REPO, 7))),
        ("Blocked by: #4", refs((REPO, 4))),
        ("Implementation is blocked by #4 for now.", refs((REPO, 4))),
        ("Blocked by #1, #2 and #3", refs((REPO, 1), (REPO, 2), (REPO, 3))),
        ("Blocked by #1, #2, and #3", refs((REPO, 1), (REPO, 2), (REPO, 3))),
        ("Depends on #1 & #2", refs((REPO, 1), (REPO, 2))),
        ("Requires #1 #2", refs((REPO, 1), (REPO, 2))),
        ("Blocked by other/lib#9", refs(("other/lib", 9))),
        ("Depends on acme/app#5", refs((REPO, 5))),
        ("Depends on ACME/App#5", refs((REPO, 5))),
        ("Requires https://github.com/other/lib/issues/44", refs(("other/lib", 44))),
        ("Requires https://github.com/acme/app/issues/44", refs((REPO, 44))),
        ("Blocked by #1 and other/lib#2 and https://github.com/x/y/issues/3",
         refs((REPO, 1), ("other/lib", 2), ("x/y", 3))),
        ("Blocked by #1\nDepends on #1", refs((REPO, 1))),
        ("first line\n  - depends on #8\n", refs((REPO, 8))),
        # Not dependencies.
        ("#5", []),
        ("See #5 for context", []),
        ("This is blocked until the release", []),
        ("blocked", []),
        ("Requires more thought", []),
        ("Blocked by #1\n#2 is unrelated", refs((REPO, 1))),
        ("```\nBlocked by #9\n```", []),
        ("> Blocked by #9", []),
        ("Write `depends on #9` in the body", []),
        ("", []),
    ],
)
def test_dependency_phrasings_are_parsed(text: str, expected: list[IssueRef]) -> None:
    assert parse_dependencies(text, REPO) == expected


def test_dependencies_are_read_from_body_and_comments() -> None:
    found = parse_dependencies(["Body without refs", "Blocked by #2", "Requires other/lib#3"], REPO)
    assert found == refs((REPO, 2), ("other/lib", 3))


@pytest.mark.parametrize(
    ("states", "passes", "reason_part"),
    [
        ({IssueRef(REPO, 2): "closed", IssueRef("other/lib", 3): "closed"}, True, ""),
        ({IssueRef(REPO, 2): "open", IssueRef("other/lib", 3): "closed"}, False, "acme/app#2 (open)"),
        ({IssueRef(REPO, 2): "closed"}, False, "other/lib#3 (state unknown)"),
        ({}, False, "acme/app#2 (state unknown)"),
    ],
)
def test_open_or_unknown_dependencies_block(states: dict[IssueRef, str], passes: bool, reason_part: str) -> None:
    issue = IssueView(REPO, 10, body="Blocked by #2", comments=("Requires other/lib#3",))
    verdict = check_dependencies(issue, states)
    if passes:
        assert verdict is None
    else:
        assert verdict is not None
        assert verdict.gate == "dependency"
        assert reason_part in verdict.reason


def test_self_reference_is_not_a_dependency() -> None:
    assert check_dependencies(IssueView(REPO, 4, body="Blocked by #4"), {}) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Fixes #3", refs((REPO, 3))),
        ("closes #3 and resolves other/lib#4", refs((REPO, 3), ("other/lib", 4))),
        ("Resolved: https://github.com/acme/app/issues/8", refs((REPO, 8))),
        ("This PR resolves https://github.com/other/lib/issues/8", refs(("other/lib", 8))),
        ("Closes acme/app#5", refs((REPO, 5))),
        ("CLOSES: #10", refs((REPO, 10))),
        ("closes:#10", refs((REPO, 10))),
        ("- Fixed #1\n- Close #2\n- Resolve #3", refs((REPO, 1), (REPO, 2), (REPO, 3))),
        ("Resolves #10, resolves #123", refs((REPO, 10), (REPO, 123))),
        # GitHub needs a keyword per issue: the second reference is a plain mention.
        ("Fixes #1, #2 and #3", refs((REPO, 1))),
        # Plain mentions and other words link nothing.
        ("Related to #3", []),
        ("See #3 and acme/app#4 and https://github.com/acme/app/issues/5", []),
        ("Part of acme/app#5", []),
        ("This is a hotfix #3", []),
        ("prefix#3", []),
        ("Fixes#3", []),
        ("Fixes the bug described in #3", []),
        # Keywords outside prose.
        ("`Fixes #3`", []),
        ("```\nFixes #3\n```", []),
        ("> Fixes #3", []),
        ("<!-- Fixes #3 -->", []),
        ("    Fixes #3", []),
        ("<details>\n\nFixes #3\n\n</details>", []),
    ],
)
def test_closing_keywords_are_found(text: str, expected: list[IssueRef]) -> None:
    assert closing_references(text, REPO) == expected


def test_a_title_keyword_does_not_link_but_the_body_does() -> None:
    assert linked_issues("Fixes #3 the right way", REPO) == [3]
    assert linked_issues("Follows up on #3; also fixes other/lib#4", REPO) == []
    assert linked_issues(None, REPO) == []
