"""The part of a CI job log worth showing a fixer: the failing step's tail, as plain text.

GitHub Actions job logs are lines prefixed with a timestamp; each step starts with a
``##[group]Run …`` line and a failing step prints ``##[error]…``. Colours are ANSI escape
sequences. Everything here is pure; redaction of secrets is the caller's job.
"""

from __future__ import annotations

import re

MAX_TAIL_LINES = 120
MAX_TAIL_CHARS = 8_000

_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_TIMESTAMP = re.compile(r"^\ufeff?\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z ?")
_STEP_START = re.compile(r"^##\[group\]Run ")
_ERROR = re.compile(r"^##\[error\]")


def plain_lines(log: str) -> list[str]:
    """The log's lines without timestamps, ANSI escapes or other control characters."""
    lines = []
    for raw in log.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = _CONTROL.sub("", _ANSI.sub("", raw))
        lines.append(_TIMESTAMP.sub("", line))
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def failing_step(lines: list[str]) -> list[str]:
    """The lines of the step that printed the first ``##[error]``, through that error.

    Without an error marker (another CI's log, a cancelled job) the whole log is the step.
    """
    error = next((i for i, line in enumerate(lines) if _ERROR.match(line)), None)
    if error is None:
        return lines
    start = max((i for i in range(error + 1) if _STEP_START.match(lines[i])), default=0)
    end = error + 1
    while end < len(lines) and _ERROR.match(lines[end]):
        end += 1  # consecutive error lines belong to the same failure
    return lines[start:end]


def bounded_tail(lines: list[str], *, max_lines: int = MAX_TAIL_LINES, max_chars: int = MAX_TAIL_CHARS) -> str:
    """The last ``max_lines`` lines, at most ``max_chars`` characters, marked when cut."""
    kept = lines[-max_lines:]
    text = "\n".join(kept)
    cut = len(kept) < len(lines) or len(text) > max_chars
    if len(text) > max_chars:
        text = text[-max_chars:]
        text = text[text.find("\n") + 1:] if "\n" in text else text
    return ("[… earlier lines omitted]\n" + text) if cut else text


def failing_step_tail(log: str, *, max_lines: int = MAX_TAIL_LINES, max_chars: int = MAX_TAIL_CHARS) -> str:
    """The failing step's tail of a job log: bounded, timestamps and ANSI escapes stripped."""
    return bounded_tail(failing_step(plain_lines(log)), max_lines=max_lines, max_chars=max_chars)
