"""The prose of a Markdown text: what a reader sees as running text, nothing quoted or hidden.

Commands, dependency lines and closing keywords count only in prose. The text is parsed
as CommonMark (plus GitHub's tables) by markdown-it-py and the token stream is walked;
these never count:

- fenced code (any fence length, backticks or tildes) and indented code;
- inline code spans, which become :data:`CODE_MARK` so nothing next to them moves to
  the start of a line;
- HTML blocks, inline HTML comments (``<!-- … -->``) and everything inside
  ``<details>`` … ``</details>`` (an unclosed ``<details>`` hides the rest);
- block quotes, at any depth.

Pure and total: any string gives a list, in time linear in its length. Text past
:data:`MAX_MARKDOWN_CHARS` (four times GitHub's limit for a body) is ignored.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from markdown_it import MarkdownIt
from markdown_it.token import Token

MAX_MARKDOWN_CHARS = 262_144
CODE_MARK = "\N{OBJECT REPLACEMENT CHARACTER}"
"""Stands in for an inline code span or hidden inline HTML inside a prose line."""

_DETAILS_TAG = re.compile(r"<(/?)details(?=[\s>/])", re.IGNORECASE)
_SKIPPED_BLOCKS = frozenset({"fence", "code_block"})
_EMPHASIS = frozenset({"em_open", "em_close", "strong_open", "strong_close"})
_MARKDOWN = MarkdownIt("commonmark").enable("table")
"""Configured once and never changed; ``parse`` keeps its state per call."""


def _without_comments(html: str) -> str:
    """``html`` with ``<!-- … -->`` comments removed (one linear scan)."""
    kept: list[str] = []
    position = 0
    while True:
        start = html.find("<!--", position)
        if start < 0:
            kept.append(html[position:])
            return "".join(kept)
        kept.append(html[position:start])
        end = html.find("-->", start + 4)
        if end < 0:
            return "".join(kept)
        position = end + 3


class _DetailsDepth:
    """How many ``<details>`` elements enclose the current position."""

    def __init__(self) -> None:
        self.depth = 0

    def feed(self, html: str) -> None:
        for match in _DETAILS_TAG.finditer(_without_comments(html)):
            self.depth = max(0, self.depth - 1) if match.group(1) else self.depth + 1


def _inline_lines(children: Sequence[Token], details: _DetailsDepth) -> list[str]:
    lines: list[str] = []
    current: list[str] = []
    for child in children:
        if child.type == "html_inline":
            outside = details.depth == 0
            details.feed(child.content)
            if outside and (details.depth > 0 or child.content.startswith("<!--")):
                current.append(CODE_MARK)
            continue
        if details.depth > 0:
            continue
        if child.type == "text":
            current.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            lines.append("".join(current))
            current = []
        elif child.type in ("code_inline", "image"):
            current.append(CODE_MARK)
        elif child.type in _EMPHASIS:
            current.append(child.markup)  # as written: ``_`` may belong to a name (``my_org/_lib#3``)
    lines.append("".join(current))
    return lines


def prose_lines(text: str) -> list[str]:
    """The lines of running text in Markdown ``text``, without code, quotes, HTML or ``<details>``."""
    tokens = _MARKDOWN.parse((text or "")[:MAX_MARKDOWN_CHARS])
    details = _DetailsDepth()
    quote_depth = 0
    lines: list[str] = []
    for token in tokens:
        if token.type == "blockquote_open":
            quote_depth += 1
        elif token.type == "blockquote_close":
            quote_depth = max(0, quote_depth - 1)
        elif quote_depth or token.type in _SKIPPED_BLOCKS:
            continue
        elif token.type == "html_block":
            details.feed(token.content)
        elif token.type == "inline":
            lines.extend(line for line in _inline_lines(token.children or (), details) if line.strip())
    return lines
