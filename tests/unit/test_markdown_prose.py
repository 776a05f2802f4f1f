"""Only prose counts: commands and dependency lines hidden in code, quotes, HTML or
``<details>`` are not read, whatever fence or nesting the writer chose."""

from __future__ import annotations

import pytest

from agentz_app.domain.commands import Command, parse_command
from agentz_app.domain.dependencies import IssueRef, parse_dependencies
from agentz_app.domain.markdown import CODE_MARK, prose_lines

REPO = "acme/app"

# Each wraps the line "{line}" so that a reader does not see it as running text.
HIDDEN = {
    "three backticks": "```\n{line}\n```",
    "three backticks with info": "```sh\n{line}\n```",
    "four backticks": "````\n{line}\n````",
    "four backticks around three": "````\n```\n```\n{line}\n```\n````",
    "four backticks, three do not close": "````md\nintro\n```\n{line}\n",
    "tildes": "~~~\n{line}\n~~~",
    "tildes around backticks": "~~~\n```\n{line}\n~~~",
    "unclosed fence": "text\n\n```\n{line}",
    "indented code": "Example:\n\n    {line}\n",
    "indented code after a list": "- item\n\n\n      {line}",
    "tab-indented code": "\t{line}",
    "block quote": "> {line}",
    "lazy block quote": "> quoted\n{line}",
    "nested block quote": "> > > {line}",
    "quote in a list": "- > {line}",
    "html comment": "<!-- {line} -->",
    "multi-line html comment": "<!--\n\n{line}\n\n-->",
    "html comment inside a paragraph": "Thanks! <!--\n{line}\n-->",
    "details": "<details>\n<summary>Log</summary>\n\n{line}\n\n</details>",
    "details opened inline": "See <details> here\n{line}\n</details>",
    "unclosed details": "<details>\n\nintro\n\n{line}",
    "nested details": "<details>\n\n<details>\n\nx\n\n</details>\n\n{line}\n\n</details>",
    "html block": "<div>\n{line}\n</div>",
    "pre block": "<pre>\n\n{line}\n\n</pre>",
    "inline code": "`{line}`",
    "double-backtick inline code": "``{line}``",
}


@pytest.mark.parametrize("wrapper", HIDDEN.values(), ids=list(HIDDEN))
def test_hidden_commands_are_not_commands(wrapper: str) -> None:
    assert parse_command(wrapper.format(line="/agent-z run")) is None


@pytest.mark.parametrize("wrapper", HIDDEN.values(), ids=list(HIDDEN))
def test_hidden_dependency_lines_block_nothing(wrapper: str) -> None:
    assert parse_dependencies(wrapper.format(line="Blocked by #9"), REPO) == []


SHOWN = {
    "plain": "{line}",
    "after a closed three-backtick fence": "```\ncode\n```\n{line}",
    "after a closed four-backtick fence": "````\n```\n````\n{line}",
    "after a closed tilde fence": "~~~\n```\n~~~\n\n{line}",
    "after a closed comment": "<!-- note -->\n\n{line}",
    "after a closed details": "<details>\n\nx\n\n</details>\n\n{line}",
    "after a quote": "> quoted\n\n{line}",
    "after inline code on another line": "Run `make`\n{line}",
    "after indented code": "    code\n\n{line}",
    "in a list item": "- {line}",
}


@pytest.mark.parametrize("wrapper", SHOWN.values(), ids=list(SHOWN))
def test_commands_in_prose_still_count(wrapper: str) -> None:
    assert parse_command(wrapper.format(line="/agent-z plan")) == Command("plan", "", "/agent-z plan")


@pytest.mark.parametrize("wrapper", SHOWN.values(), ids=list(SHOWN))
def test_dependency_lines_in_prose_still_count(wrapper: str) -> None:
    assert parse_dependencies(wrapper.format(line="Blocked by #9"), REPO) == [IssueRef(REPO, 9)]


def test_the_first_prose_command_wins_over_a_hidden_earlier_one() -> None:
    body = "```\n/agent-z cancel\n```\n<!-- /agent-z retry -->\n/agent-z run\n/agent-z status"
    assert parse_command(body) == Command("run", "", "/agent-z run")


def test_inline_code_before_a_command_keeps_it_off_the_line_start() -> None:
    assert parse_command("`x` /agent-z run") is None


def test_an_unknown_command_in_prose_is_unknown() -> None:
    assert parse_command("> /agent-z run\n\n/agent-z deploy now") == Command("unknown", "now", "/agent-z deploy now")


def test_prose_lines_replace_inline_code_and_comments_with_a_mark() -> None:
    assert prose_lines("Run `make test` now <!-- secret -->\nnext *line*") == [
        f"Run {CODE_MARK} now {CODE_MARK}",
        "next *line*",
    ]


def test_underscores_in_repository_names_survive_emphasis() -> None:
    assert parse_dependencies("Depends on o/r._#1 and o/_r#2", REPO) == [IssueRef("o/r._", 1), IssueRef("o/_r", 2)]


def test_prose_lines_of_empty_text() -> None:
    assert prose_lines("") == []
    assert prose_lines("\n\n   \n") == []
