"""The one wrapper every external process call goes through (git, agent CLIs).

Each child runs in its own session (process group); on timeout or cancellation the
whole group is killed. Output lines can be streamed to a sink; secrets are redacted
from what is logged. :func:`scrubbed_env` builds the environment agents receive.

Output of any shape is safe: it is read in chunks and split into lines here (no
``readline()`` limit to overflow), every line reaches the sink (a line longer than
``LOG_LINE_BYTES`` is cut, with a marker saying how much), and the captured stdout and
stderr keep at most their head and tail (``max_output_bytes``), with a marker line saying
how many bytes in between were dropped. Memory stays bounded whatever the child prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from agentz_app.config import SECRET_VARIABLES
from agentz_app.errors import AgentTimeout
from agentz_app.secrets import redact_key_lines, redact_text

LineSink = Callable[[str], None]

CHUNK_BYTES = 64 * 1024
LOG_LINE_BYTES = 16 * 1024  # a longer line reaches the sink cut to this size
MAX_STDOUT_BYTES = 16 * 1024 * 1024  # head + tail of stdout kept for parsing
MAX_STDERR_BYTES = 1024 * 1024

# Variables an agent subprocess may inherit from the parent environment.
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TERM", "TMPDIR", "TZ", "USER", "SHELL", "NODE_PATH",
              "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME")


def scrubbed_env(extra: Mapping[str, str] | None = None, *, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A minimal child environment: inherited basics plus ``extra``, never a secret variable."""
    source = os.environ if base is None else base
    env = {key: source[key] for key in _INHERITED if key in source}
    env.update(extra or {})
    for key in list(env):
        if key.upper() in SECRET_VARIABLES or key.upper().startswith(("GITHUB_APP_", "AGENTZ_SECRET")):
            del env[key]
    return env


@dataclass(frozen=True)
class ProcessResult:
    args: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str
    duration: float


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


class OutputCapture:
    """Keep the first and last ``limit // 2`` bytes of a stream and count what was dropped between."""

    def __init__(self, limit: int) -> None:
        self.head_limit = limit - limit // 2
        self.tail_limit = limit // 2
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0

    def feed(self, data: bytes) -> None:
        room = self.head_limit - len(self.head)
        if room > 0:
            self.head += data[:room]
            data = data[room:]
        if not data:
            return
        self.tail += data
        excess = len(self.tail) - self.tail_limit
        if excess > self.tail_limit:  # trim in batches: amortised linear, at most twice the tail in memory
            del self.tail[:excess]
            self.dropped += excess

    def text(self) -> str:
        """The kept output; a marker line replaces the dropped middle."""
        excess = len(self.tail) - self.tail_limit
        if excess > 0:
            del self.tail[:excess]
            self.dropped += excess
        head = self.head.decode("utf-8", errors="replace")
        tail = self.tail.decode("utf-8", errors="replace")
        if not self.dropped:
            return head + tail
        return f"{head}\n[agent-z: {self.dropped} bytes of output dropped here]\n{tail}"


class LineSplitter:
    """Split a byte stream into lines for a sink; a line longer than ``limit`` bytes is cut with a marker."""

    def __init__(self, sink: LineSink, limit: int = LOG_LINE_BYTES) -> None:
        self.sink = sink
        self.limit = limit
        self.line = bytearray()
        self.cut = 0
        self.in_private_key = False

    def feed(self, data: bytes) -> None:
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            self._add(data, start, end)
            self._emit()
            start = end + 1
        self._add(data, start, len(data))

    def close(self) -> None:
        """Emit the last line if the stream did not end with a newline."""
        if self.line or self.cut:
            self._emit()

    def _add(self, data: bytes, start: int, end: int) -> None:
        room = max(0, self.limit - len(self.line))
        take = min(room, end - start)
        self.line += data[start : start + take]
        self.cut += end - start - take

    def _emit(self) -> None:
        text = self.line.decode("utf-8", errors="replace").rstrip("\r")
        if self.cut:
            text += f" … [agent-z: {self.cut} more bytes of this line not logged]"
        self.line = bytearray()
        self.cut = 0
        text, self.in_private_key = redact_key_lines(text, self.in_private_key)
        self.sink(redact_text(text))


async def _pump(stream: asyncio.StreamReader | None, capture: OutputCapture, sink: LineSink | None) -> None:
    if stream is None:
        return
    lines = LineSplitter(sink) if sink is not None else None
    while data := await stream.read(CHUNK_BYTES):
        capture.feed(data)
        if lines is not None:
            lines.feed(data)
    if lines is not None:
        lines.close()


async def run_process(
    args: Sequence[str],
    *,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 600.0,
    stdin: str | None = None,
    on_line: LineSink | None = None,
    max_output_bytes: int = MAX_STDOUT_BYTES,
    max_stderr_bytes: int = MAX_STDERR_BYTES,
) -> ProcessResult:
    """Run ``args`` in a new process group; kill the group and raise AgentTimeout on timeout.

    ``stdin`` is written then closed; without it the child gets /dev/null (an open pipe
    makes some CLIs wait). Cancelling the awaiting task also kills the group. Every output
    line goes to ``on_line`` (redacted, long ones cut); the result keeps at most the head and
    tail of stdout (``max_output_bytes``) and stderr (``max_stderr_bytes``).
    """
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *args,
        cwd=str(cwd) if cwd is not None else None,
        env=dict(env) if env is not None else None,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    out = OutputCapture(max_output_bytes)
    err = OutputCapture(max_stderr_bytes)

    async def communicate() -> int:
        if stdin is not None and proc.stdin is not None:
            proc.stdin.write(stdin.encode())
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                await proc.stdin.drain()
            proc.stdin.close()
        await asyncio.gather(_pump(proc.stdout, out, on_line), _pump(proc.stderr, err, on_line))
        return await proc.wait()

    try:
        # asyncio.timeout, not wait_for: on 3.11 wait_for drops a cancel that arrives as the child exits.
        async with asyncio.timeout(timeout):
            code = await communicate()
    except TimeoutError:
        _kill_group(proc)
        await proc.wait()
        raise AgentTimeout(f"{Path(args[0]).name} timed out after {timeout:.0f}s; process group killed") from None
    except BaseException:
        _kill_group(proc)
        raise
    # The leader exited; make sure nothing it spawned lingers in its group.
    _kill_group(proc)
    return ProcessResult(tuple(args), code, out.text(), err.text(), time.monotonic() - started)
