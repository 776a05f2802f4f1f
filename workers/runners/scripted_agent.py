"""The child process of the scripted backend: carry out one step in the current directory.

Reads the step as JSON on stdin and prints one JSON event per line on stdout,
ending with ``{"type": "result", ...}``. Standard library only, so it starts fast.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def _emit(**event: Any) -> None:
    print(json.dumps(event), flush=True)


def _inside(root: Path, relative: str) -> Path:
    target = (root / relative).resolve()
    if target != root and root not in target.parents:
        raise ValueError(f"path {relative!r} escapes the workdir")
    return target


def _finish(step: dict[str, Any], error: str | None = None, exit_code: int = 0) -> int:
    fail = step.get("fail")
    if error is None and fail:
        error, exit_code = str(fail["error"]), int(fail["exit_code"])
    _emit(type="result", text=step.get("text", "") if error is None else "", error=error,
          cost_usd=step.get("cost_usd", 0.0), tokens=step.get("tokens", 0))
    return exit_code


def play(step: dict[str, Any], root: Path) -> int:
    """Carry out ``step`` inside ``root``; return the exit code."""
    if step.get("sleep"):
        time.sleep(float(step["sleep"]))
    if step.get("hang"):
        # A unique duration makes the sleeper findable by its command line, also from outside a PID namespace.
        duration = f"3600.{os.getpid()}{time.time_ns() % 1_000_000}"
        sleeper = subprocess.Popen(["sleep", duration])
        _emit(type="hang", pid=sleeper.pid, command=f"sleep {duration}")
        sleeper.wait()
    try:
        for item in step.get("write", []):
            target = _inside(root, item["path"])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(item["content"])
            _emit(type="write", path=item["path"])
        for item in step.get("replace", []):
            target = _inside(root, item["path"])
            current = target.read_text()
            if item["old"] not in current:
                return _finish(step, f"{item['path']}: text to replace not found", 1)
            target.write_text(current.replace(item["old"], item["new"]))
            _emit(type="replace", path=item["path"])
    except (OSError, ValueError) as exc:
        return _finish(step, str(exc), 1)
    for command in step.get("run", []):
        done = subprocess.run(command, shell=True, cwd=root, capture_output=True, text=True, check=False)
        _emit(type="command", command=command, exit_code=done.returncode, output=(done.stdout + done.stderr)[-4000:])
        if done.returncode != 0:
            return _finish(step, f"command failed with exit {done.returncode}: {command}", 1)
    return _finish(step)


def main() -> int:
    """Entry point: the step on stdin, the workdir as the current directory."""
    step = json.loads(sys.stdin.read())
    return play(step, Path.cwd().resolve())


if __name__ == "__main__":
    sys.exit(main())
