"""Log sinks that stream an agent's output lines to ``<logs>/runs/<run_id>/<role>.log``."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from agentz_app.config import Settings
from agentz_app.secrets import Redactor, redact_key_lines

_SAFE_RE = re.compile(r"[^A-Za-z0-9_.-]+")
MAX_LINE_CHARS = 16 * 1024


def run_log_path(logs_dir: Path, run_id: str, role: str) -> Path:
    """Where the agent log of ``role`` in run ``run_id`` lives."""
    run_part = _SAFE_RE.sub("_", str(run_id)).strip("._") or "run"
    role_part = _SAFE_RE.sub("_", role).strip("._") or "agent"
    return logs_dir / "runs" / run_part / f"{role_part}.log"


@contextlib.contextmanager
def run_log(
    settings: Settings,
    run_id: str,
    role: str,
    *,
    also: Callable[[str], None] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Iterator[Callable[[str], None]]:
    """Open the run's log file for appending and yield a sink writing timestamped, redacted lines.

    Redacted are the secrets recognised by shape, the lines of a multi-line private key and
    the values of the configured secrets (from ``settings`` and ``environ``, default this
    process's environment); a line longer than ``MAX_LINE_CHARS`` is cut with a marker.
    ``also`` receives every (redacted) line too, for a live view. The file is closed on exit.
    """
    path = run_log_path(settings.logs_dir, run_id, role)
    path.parent.mkdir(parents=True, exist_ok=True)
    redact = Redactor.from_settings(settings, environ)
    inside_key = False
    with path.open("a", encoding="utf-8", errors="replace") as handle:

        def sink(line: str) -> None:
            nonlocal inside_key
            line, inside_key = redact_key_lines(line, inside_key)
            clean = redact(line).replace("\r", "\\r").replace("\n", "\\n")  # one call, one log line
            if len(clean) > MAX_LINE_CHARS:
                cut = len(clean) - MAX_LINE_CHARS
                clean = f"{clean[:MAX_LINE_CHARS]} … [agent-z: {cut} more characters not logged]"
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
            handle.write(f"{stamp} {clean}\n")
            handle.flush()
            if also is not None:
                also(clean)

        yield sink
