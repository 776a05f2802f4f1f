"""Parse issue references out of Markdown text: dependencies and pull-request links.

Pure functions, no I/O. Understood dependency phrasings (case-insensitive, anywhere
in a line): ``Blocked by``, ``Depends on``, ``Requires``, each followed by one or
more references — ``#N``, ``owner/repo#N`` or ``https://github.com/owner/repo/issues/N``
— separated by commas, ``and``, ``&`` or spaces.

A pull request links an issue only as GitHub does: a closing keyword (``close``,
``closes``, ``closed``, ``fix``, ``fixes``, ``fixed``, ``resolve``, ``resolves``,
``resolved``; any case, optional colon) followed by one reference; each further issue
needs its own keyword. A plain mention links nothing.

Only prose counts (:func:`agentz_app.domain.markdown.prose_lines`): code, quotes,
HTML, comments and ``<details>`` are ignored, so an example in a comment does not
block anything.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from agentz_app.domain.markdown import prose_lines

MAX_ISSUE_NUMBER = 2**31 - 1
"""Issue numbers above this are not references (GitHub numbers fit a 32-bit integer)."""


@dataclass(frozen=True, order=True)
class IssueRef:
    """A reference to an issue: repository full name and number."""

    repo: str
    number: int

    def __str__(self) -> str:
        return f"{self.repo}#{self.number}"


_REPO = r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+"
# A repository prefix starts where a name starts: without this, every position inside
# a long run of name characters would be tried, which is quadratic in the run's length.
_NAME_START = r"(?<![A-Za-z0-9_.-])"
_ONE_REF = rf"(?:https?://github\.com/{_REPO}/(?:issues|pull)/\d+|(?:{_NAME_START}{_REPO})?#\d+)"
_SEPARATOR = r"(?:[ \t]*(?:,[ \t]*(?:and\b)?|&|\band\b)[ \t]*|[ \t]+)"
_REF_LIST = rf"{_ONE_REF}(?:{_SEPARATOR}{_ONE_REF})*"

_DEPENDENCY = re.compile(
    rf"\b(?:blocked[ \t]+by|depends[ \t]+on|requires)[ \t]*:?[ \t]*(?P<refs>{_REF_LIST})",
    re.IGNORECASE,
)
_CLOSING = re.compile(
    rf"\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)(?::[ \t]*|[ \t]+)(?P<refs>{_ONE_REF})",
    re.IGNORECASE,
)
# Cheap tests on the raw text: without these words, no Markdown needs parsing.
_DEPENDENCY_WORD = re.compile(r"blocked|depends|requires", re.IGNORECASE)
_CLOSING_WORD = re.compile(r"close|fix|resolve", re.IGNORECASE)
_REF = re.compile(
    rf"https?://github\.com/(?P<url_repo>{_REPO})/(?:issues|pull)/(?P<url_number>\d+)"
    rf"|(?:{_NAME_START}(?P<repo>{_REPO}))?#(?P<number>\d+)",
    re.IGNORECASE,
)


def _refs_in(fragment: str, current_repo: str) -> list[IssueRef]:
    refs: list[IssueRef] = []
    for match in _REF.finditer(fragment):
        repo = match.group("url_repo") or match.group("repo") or current_repo
        digits = match.group("url_number") or match.group("number")
        if len(digits) > len(str(MAX_ISSUE_NUMBER)) or not 0 < int(digits) <= MAX_ISSUE_NUMBER:
            continue  # no such issue (and int() refuses very long digit strings)
        refs.append(IssueRef(_canonical(repo, current_repo), int(digits)))
    return refs


def _canonical(repo: str, current_repo: str) -> str:
    # GitHub names are case-insensitive: a same-repo reference resolves to our spelling.
    return current_repo if repo.lower() == current_repo.lower() else repo


def _unique(refs: Iterable[IssueRef]) -> list[IssueRef]:
    seen: dict[IssueRef, None] = {}
    for ref in refs:
        seen.setdefault(ref, None)
    return list(seen)


def _matches(pattern: re.Pattern[str], text: str, current_repo: str) -> list[IssueRef]:
    refs: list[IssueRef] = []
    for line in prose_lines(text):
        for match in pattern.finditer(line):
            refs.extend(_refs_in(match.group("refs"), current_repo))
    return refs


def parse_dependencies(texts: str | Iterable[str], current_repo: str) -> list[IssueRef]:
    """Issues that ``texts`` (an issue body and its comments) declare as prerequisites."""
    chunks = [texts] if isinstance(texts, str) else list(texts)
    refs: list[IssueRef] = []
    for chunk in chunks:
        if chunk and _DEPENDENCY_WORD.search(chunk):
            refs.extend(_matches(_DEPENDENCY, chunk, current_repo))
    return _unique(refs)


def closing_references(text: str, current_repo: str) -> list[IssueRef]:
    """Issues a pull-request body closes with a keyword (``Fixes #3``, ``closes: o/r#4``)."""
    if not text or not _CLOSING_WORD.search(text):
        return []
    return _unique(_matches(_CLOSING, text, current_repo))
