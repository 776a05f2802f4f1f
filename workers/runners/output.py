"""Pure parsing helpers shared by every runner: structured output in agent text."""

from __future__ import annotations

import json
import re
from typing import Any

from agentz_app.logs import get_logger

MAX_JSON_LINE = 1_000_000  # characters; agents' JSON events are far smaller, a huge line is skipped
_FENCE_RE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)```", re.S)


def extract_json(text: str) -> Any:
    """Return the last JSON object or array in ``text``, or None.

    Fenced blocks (```json or plain ```) win over bare JSON: the last fenced block
    that parses is returned. Without one, the last top-level ``{...}``/``[...]`` value
    embedded in the prose is returned; bare values after one nested too deeply to decode are not searched.
    """
    fenced: Any = None
    for match in _FENCE_RE.finditer(text):
        language, body = match.group(1).lower(), match.group(2).strip()
        if language not in ("", "json", "jsonc"):
            continue
        try:
            value = json.loads(body)
        except (ValueError, RecursionError):
            continue
        if isinstance(value, dict | list):
            fenced = value
    if fenced is not None:
        return fenced
    return _last_bare_json(text)


def _last_bare_json(text: str) -> Any:
    decoder = json.JSONDecoder()
    found: Any = None
    index = 0
    while index < len(text):
        if text[index] in "{[":
            try:
                value, end = decoder.raw_decode(text, index)
            except ValueError:
                index += 1
                continue
            except RecursionError:
                break  # nested deeper than any usable answer; retrying inside it is quadratic
            if isinstance(value, dict | list):
                found = value
                index = end
                continue
        index += 1
    return found


def json_fence(value: object) -> str:
    """Render ``value`` as a fenced ```json block."""
    return "```json\n" + json.dumps(value, indent=2, sort_keys=False) + "\n```"


def json_lines(stdout: str, *, max_line: int = MAX_JSON_LINE) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines event stream; other lines are skipped.

    A line longer than ``max_line`` characters is skipped with a warning in the log, as is
    one nested too deeply to decode.
    """
    events = []
    for line in stdout.split("\n"):
        line = line.strip()
        if not line.startswith("{"):
            continue
        if len(line) > max_line:
            get_logger(__name__).warning("agent output line too long to parse; skipped", chars=len(line),
                                         limit=max_line, start=line[:80])
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        except RecursionError:
            get_logger(__name__).warning("agent output line nested too deeply to parse; skipped", chars=len(line))
            continue
        if isinstance(value, dict):
            events.append(value)
    return events


# What a tool result says when the sandbox or a permission rule refused it (as opposed to a
# command that ran and failed, such as a failing test). Bounded repetitions: linear time.
_REFUSAL_RE = re.compile(
    r"permission denied|operation not permitted|read-only file system|\bEACCES\b|\bEPERM\b|\bEROFS\b"
    r"|\bbwrap:|\bseccomp\b|\bsandbox(?:ed|ing)?\b[^\n]{0,60}?\b(?:denied|refused|blocked|not allowed|violation|"
    r"prevented|restrict)|\b(?:denied|refused|blocked|not allowed|prevented)\b[^\n]{0,60}?\bsandbox"
    r"|rejected permission|prevents you from using this specific tool",
    re.I,
)
MAX_ERROR_DETAIL = 2000


def refusal_reason(text: str) -> str | None:
    """The line of ``text`` showing a sandbox or permission refusal, shortened, or None."""
    match = _REFUSAL_RE.search(text)
    if match is None:
        return None
    start = text.rfind("\n", 0, match.start()) + 1
    end = text.find("\n", match.end())
    line = text[start : end if end >= 0 else len(text)].strip()
    return line[:MAX_ERROR_DETAIL]


def shorten(text: str, limit: int = MAX_ERROR_DETAIL) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
