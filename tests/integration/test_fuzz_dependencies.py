"""Fuzz dependency and command parsing with generated issue bodies and comments.

Issue bodies and comments are written by anyone who can open an issue. Parsing never
crashes, finds nothing without a dependency phrase or command, reads back exactly the
references a maintainer wrote in a ``Depends on #a, #b and owner/repo#c`` line, and
never finds a command that only appears inside code, quotes or comments.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentz_app.domain.commands import COMMANDS, parse_command
from agentz_app.domain.dependencies import (
    MAX_ISSUE_NUMBER,
    IssueRef,
    closing_references,
    parse_dependencies,
)
from agentz_app.domain.markdown import prose_lines

REPO = "acme/app"
FUZZ = settings(max_examples=100, deadline=None)
TRIGGER = re.compile(r"blocked|depends|requires", re.IGNORECASE)

names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,15}", fullmatch=True)
numbers = st.integers(1, 10**9)
refs = st.tuples(st.none() | st.tuples(names, names).map("/".join), numbers)
fragments = st.one_of(
    st.text(max_size=60),
    st.sampled_from(["Depends on", "depends on:", "Blocked by", "REQUIRES", "requires:", "blocked  by", "Fixes",
                     "closes", "#", "##", "# ", "#0", "#-1", "and", ",", "&", "\n", "```", "`", "> ", "~~~",
                     "https://github.com/", "/issues/", "/pull/", "owner/repo#", "a/b/c#1", "````", "    ",
                     "<!--", "-->", "<details>", "</details>", "<div>", "\t", "/agent-z run", "/agent-z",
                     "> /agent-z plan", "\n\n", "*", "_", "[", "](", "\\"]),
    st.integers(0, 10**30).map(lambda n: f"#{n}"),
    st.integers(1, 6000).map(lambda n: "#" + "9" * n),
    refs.map(lambda ref: f"{ref[0] or ''}#{ref[1]}"),
    st.tuples(names, names, numbers).map(lambda t: f"https://github.com/{t[0]}/{t[1]}/issues/{t[2]}"),
)
bodies = st.lists(fragments, max_size=25).map(" ".join) | st.text(max_size=400)


@FUZZ
@given(body=bodies, comments=st.lists(bodies, max_size=3))
def test_parsing_any_body_never_crashes_and_returns_real_issue_numbers(body: str, comments: list[str]) -> None:
    for found in (
        parse_dependencies([body, *comments], REPO),
        closing_references(body, REPO),
    ):
        assert len(found) == len(set(found))
        assert all(isinstance(ref, IssueRef) and 0 < ref.number <= MAX_ISSUE_NUMBER for ref in found)


@FUZZ
@given(body=bodies.filter(lambda text: not TRIGGER.search(text)))
def test_text_without_a_dependency_phrase_has_no_dependencies(body: str) -> None:
    assert parse_dependencies(body, REPO) == []


def _expected(ref: tuple[str | None, int]) -> IssueRef:
    repo, number = ref
    if repo is None or repo.lower() == REPO.lower():
        return IssueRef(REPO, number)
    return IssueRef(repo, number)


def _render(items: list[tuple[str | None, int]]) -> str:
    texts = [f"{repo or ''}#{number}" for repo, number in items]
    if len(texts) == 1:
        return texts[0]
    return ", ".join(texts[:-1]) + " and " + texts[-1]


@FUZZ
@given(
    items=st.lists(refs, min_size=1, max_size=8),
    phrase=st.sampled_from(["Depends on", "depends on", "Blocked by", "Requires", "requires:"]),
    before=st.sampled_from(["", "Note: ", "- [ ] ", "This ", "\n\n"]),
    after=st.sampled_from(["", ".", " first.", "\nOther text #99 here."]),
)
def test_a_rendered_dependency_list_is_parsed_back_exactly(
    items: list[tuple[str | None, int]], phrase: str, before: str, after: str
) -> None:
    body = f"{before}{phrase} {_render(items)}{after}"
    expected = list(dict.fromkeys(_expected(item) for item in items))
    assert parse_dependencies(body, REPO) == expected


@FUZZ
@given(items=st.lists(refs, min_size=1, max_size=4), fence=st.sampled_from(["```", "~~~", "`"]))
def test_dependency_lines_in_code_or_quotes_are_ignored(items: list[tuple[str | None, int]], fence: str) -> None:
    line = f"Depends on {_render(items)}"
    quoted = f"{fence}\n{line}\n{fence}" if fence != "`" else f"`{line}`"
    assert parse_dependencies([quoted, f"> {line}"], REPO) == []


def test_long_runs_of_name_characters_are_parsed_in_linear_time() -> None:
    # Each of these took tens of seconds when every position inside the run was tried.
    script = (
        "from agentz_app.domain.dependencies import parse_dependencies, closing_references\n"
        "run = 'a' * 65536\n"
        "for text in (run, run + '/' + run, 'depends on ' + run + '/' + run, 'fixes ' + run):\n"
        "    assert parse_dependencies(text, 'o/r') == []\n"
        "    assert closing_references(text, 'o/r') == []\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=30)


@FUZZ
@given(body=bodies)
def test_any_comment_parses_to_at_most_one_known_or_unknown_command(body: str) -> None:
    command = parse_command(body)
    if "/agent-z" not in body.lower():
        assert command is None
    if command is not None:
        assert command.name in (*COMMANDS, "unknown")
        assert command.raw.lower().startswith("/agent-z")
        assert any(line.strip() == command.raw for line in prose_lines(body))


@FUZZ
@given(
    name=st.sampled_from([*COMMANDS, "deploy"]),
    wrap=st.sampled_from(["```\n{}\n```", "````\n```\n{}\n````", "~~~\n{}\n~~~", "    {}", "> {}", "`{}`",
                          "<!-- {} -->", "<details>\n\n{}\n\n</details>", "<div>\n{}\n</div>"]),
    after=bodies.filter(lambda text: "agent-z" not in text.lower()),
)
def test_a_command_only_in_code_quotes_or_html_is_never_parsed(name: str, wrap: str, after: str) -> None:
    hidden = wrap.format(f"/agent-z {name}")
    assert parse_command(f"{hidden}\n\n{after}") is None


@pytest.mark.slow
def test_hostile_markdown_is_parsed_in_linear_time() -> None:
    # Inputs that make naive Markdown or regex parsers quadratic, at twice GitHub's body limit.
    script = (
        "from agentz_app.domain.commands import parse_command\n"
        "from agentz_app.domain.dependencies import parse_dependencies, closing_references\n"
        "n = 131072\n"
        "texts = ['*a' * (n // 2), '[' * n, '![' * (n // 2), '<!--' * (n // 4), 'a <details> ' * (n // 12),\n"
        "         '> ' * (n // 2), '` ' * (n // 2), '```\\n' * (n // 4), '|a|b|\\n|-|-|\\n' + '|x|y|\\n' * (n // 6),\n"
        "         ''.join(' ' * i + '- a\\n' for i in range(400)), '\\\\' * n]\n"
        "for text in texts:\n"
        "    text = 'Blocked by #1 fixes #2 /agent-z run\\n' + text\n"
        "    parse_command(text); parse_dependencies(text, 'o/r'); closing_references(text, 'o/r')\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
