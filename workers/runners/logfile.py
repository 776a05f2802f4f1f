"""Log sinks that stream an agent's output lines to ``<logs>/runs/<run_id>/<role>.log``."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from agentz_app.config import Settings
from agentz_app.logs import redact_text

_SAFE_RE = re.compile(r"[^A-Za-z0-9_.-]+")


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
) -> Iterator[Callable[[str], None]]:
    """Open the run's log file for appending and yield a sink writing timestamped, redacted lines.

    ``also`` receives every line too (for a live view). The file is closed on exit.
    """
    path = run_log_path(settings.logs_dir, run_id, role)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:

        def sink(line: str) -> None:
            clean = redact_text(line)
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
            handle.write(f"{stamp} {clean}\n")
            handle.flush()
            if also is not None:
                also(clean)

        yield sink
