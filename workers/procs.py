"""The one wrapper every external process call goes through (git, agent CLIs).

Each child runs in its own session (process group); on timeout or cancellation the
whole group is killed. Output lines can be streamed to a sink; secrets are redacted
from what is logged. :func:`scrubbed_env` builds the environment agents receive.
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
from agentz_app.logs import redact_text

LineSink = Callable[[str], None]

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


async def _pump(stream: asyncio.StreamReader | None, chunks: list[str], sink: LineSink | None) -> None:
    if stream is None:
        return
    while True:
        line = await stream.readline()
        if not line:
            return
        text = line.decode("utf-8", errors="replace")
        chunks.append(text)
        if sink is not None:
            sink(redact_text(text.rstrip("\n")))


async def run_process(
    args: Sequence[str],
    *,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 600.0,
    stdin: str | None = None,
    on_line: LineSink | None = None,
) -> ProcessResult:
    """Run ``args`` in a new process group; kill the group and raise AgentTimeout on timeout.

    ``stdin`` is written then closed; without it the child gets /dev/null (an open pipe
    makes some CLIs wait). Cancelling the awaiting task also kills the group.
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
    out: list[str] = []
    err: list[str] = []

    async def communicate() -> int:
        if stdin is not None and proc.stdin is not None:
            proc.stdin.write(stdin.encode())
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                await proc.stdin.drain()
            proc.stdin.close()
        await asyncio.gather(_pump(proc.stdout, out, on_line), _pump(proc.stderr, err, on_line))
        return await proc.wait()

    try:
        code = await asyncio.wait_for(communicate(), timeout)
    except TimeoutError:
        _kill_group(proc)
        await proc.wait()
        raise AgentTimeout(f"{Path(args[0]).name} timed out after {timeout:.0f}s; process group killed") from None
    except BaseException:
        _kill_group(proc)
        raise
    # The leader exited; make sure nothing it spawned lingers in its group.
    _kill_group(proc)
    return ProcessResult(tuple(args), code, "".join(out), "".join(err), time.monotonic() - started)
