"""Scripted agent backend: canned, deterministic steps for tests and the demo.

The steps come from ``SCRIPTED_AGENT_FILE`` (YAML or JSON) or, taking precedence,
from the ``AGENTZ_SCRIPTED_STEPS`` variable holding inline JSON (read from the
``env`` passed to :meth:`ScriptedRunner.run`, then from the process environment).
The document is either a list of steps or ``{"steps": [...]}``. For each call the
first step whose conditions all hold is used::

    steps:
      - role: task_lead            # task_lead | developer | reviewer | scheduler; omit = any
        match: "issue #1"          # substring of the prompt (optional)
        regex: "issue #1\\b"       # regular expression searched in the prompt (optional)
        call: 1                    # Nth call of this role in the same session (optional)
        nth: 2                     # Nth call of this role in the same workdir, any session (optional)
        json: {"summary": "..."}   # appended to the text as a fenced ```json block
      - role: developer
        write:   [{path: src/app.py, content: "print('hi')\\n"}]
        replace: [{path: README.md, old: "TODO", new: "Done"}]
        run:     ["python -m pytest -q"]   # shell commands run in the workdir
        text: "Implemented."
        cost_usd: 0.02
        tokens: 1200
        sleep: 0.5                 # seconds to wait before acting
      - role: reviewer
        fail: {exit_code: 2, error: "model overloaded"}
      - role: scheduler
        hang: true                 # never finishes: for timeout tests

Paths are relative to the workdir; absolute paths and paths that resolve outside
it are rejected. Each step runs in a short-lived child process (through
:func:`agentz_app.procs.run_process`, so timeouts kill its process group and the child
gets the scrubbed agent environment). A call without ``session_id`` starts a new
session ``scripted-<hex>``; per-session and per-workdir call counters live in
``<state_dir>/scripted/`` (locked, atomically replaced JSON files), so a resumed
session continues its sequence in another worker process on the same host; like a
real CLI, resuming a session this ``state_dir`` never saw fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import re
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agentz_app.config import Settings
from agentz_app.domain.runner import LogSink, RunnerResult
from agentz_app.errors import ConfigError
from agentz_app.patterns import Pattern
from agentz_app.procs import run_process
from workers.runners.cli import agent_home, endpoint_destinations
from workers.runners.environment import agent_env
from workers.runners.output import extract_json, json_fence
from workers.sandbox import Confinement, Sandbox, python_for_sandbox

STEPS_VARIABLE = "AGENTZ_SCRIPTED_STEPS"
_AGENT_SOURCE = Path(__file__).with_name("scripted_agent.py")
_SESSION_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


def _relative_path(value: str) -> str:
    path = PurePosixPath(value)
    if not value or path.is_absolute() or ".." in path.parts:
        raise ValueError(f"path {value!r} must stay inside the workdir")
    return value


class FileWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    content: str
    _check = field_validator("path")(_relative_path)


class FileReplace(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    old: str = Field(min_length=1)
    new: str
    _check = field_validator("path")(_relative_path)


class Failure(BaseModel):
    model_config = ConfigDict(extra="forbid")
    exit_code: int = Field(default=1, ge=1, le=255)
    error: str = "scripted failure"


class Step(BaseModel):
    """One canned agent answer and the conditions under which it is used."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    role: Literal["task_lead", "developer", "reviewer", "scheduler"] | None = None
    match: str | None = None
    regex: Pattern | None = None
    call: int | None = Field(default=None, ge=1)
    nth: int | None = Field(default=None, ge=1)
    write: list[FileWrite] = Field(default_factory=list)
    replace: list[FileReplace] = Field(default_factory=list)
    run: list[str] = Field(default_factory=list)
    text: str = ""
    json_value: Any = Field(default=None, alias="json")
    cost_usd: float = Field(default=0.0, ge=0)
    tokens: int = Field(default=0, ge=0)
    sleep: float = Field(default=0.0, ge=0)
    fail: Failure | None = None
    hang: bool = False

    def matches(self, role: str, prompt: str, *, call: int, nth: int) -> bool:
        """Whether this step answers call number ``call`` (``nth`` in the workdir) of ``role``."""
        return (
            (self.role is None or self.role == role)
            and (self.match is None or self.match in prompt)
            and (self.regex is None or re.search(self.regex, prompt) is not None)
            and (self.call is None or self.call == call)
            and (self.nth is None or self.nth == nth)
        )

    def output_text(self) -> str:
        """The agent's final text: ``text`` plus ``json`` as a fenced block."""
        parts = [self.text] if self.text else []
        if self.json_value is not None:
            parts.append(json_fence(self.json_value))
        return "\n\n".join(parts)


def parse_steps(document: object, *, source: str) -> list[Step]:
    """Validate a loaded steps document (a list or ``{"steps": [...]}``)."""
    if isinstance(document, dict) and set(document) == {"steps"}:
        document = document["steps"]
    if not isinstance(document, list):
        raise ConfigError(source, "scripted steps must be a list or an object with a 'steps' list")
    steps = []
    for index, raw in enumerate(document):
        try:
            steps.append(Step.model_validate(raw))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ConfigError(source, f"step {index + 1}: {where}: {first['msg']}") from None
    return steps


def load_steps(settings: Settings, env: Mapping[str, str] | None = None) -> list[Step]:
    """Read the steps from ``AGENTZ_SCRIPTED_STEPS`` or the scripted agent file."""
    inline = (env or {}).get(STEPS_VARIABLE) or os.environ.get(STEPS_VARIABLE)
    if inline:
        try:
            document = json.loads(inline)
        except ValueError as exc:
            raise ConfigError(STEPS_VARIABLE, f"not valid JSON: {exc}") from None
        return parse_steps(document, source=STEPS_VARIABLE)
    path = settings.scripted_agent_file
    if path is None:
        raise ConfigError("SCRIPTED_AGENT_FILE", f"required by the scripted backend (or set {STEPS_VARIABLE})")
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError("SCRIPTED_AGENT_FILE", f"cannot read {path}: {exc.strerror}") from None
    try:
        document = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError("SCRIPTED_AGENT_FILE", f"cannot parse {path}: {exc}") from None
    return parse_steps(document, source="SCRIPTED_AGENT_FILE")


def select_step(steps: Sequence[Step], role: str, prompt: str, *, call: int, nth: int) -> Step | None:
    """The first step that answers this call, or None."""
    return next((step for step in steps if step.matches(role, prompt, call=call, nth=nth)), None)


class CallCounters:
    """Per-session and per-workdir call counters shared by processes through files."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / ".lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _bump(self, path: Path, role: str) -> int:
        counts: dict[str, int] = {}
        if path.exists():
            loaded = json.loads(path.read_text() or "{}")
            if isinstance(loaded, dict):
                counts = {str(key): int(value) for key, value in loaded.items()}
        counts[role] = counts.get(role, 0) + 1
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "w") as handle:
            json.dump(counts, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        return counts[role]

    def knows(self, session_id: str) -> bool:
        """True when a call of ``session_id`` was made with these counters (this host's state)."""
        return (self.directory / "sessions" / f"{session_id}.json").exists()

    def bump(self, session_id: str, workdir: Path, role: str) -> tuple[int, int]:
        """Count one more call of ``role``; return (call in session, call in workdir)."""
        workdir_key = hashlib.sha256(str(workdir.resolve()).encode()).hexdigest()[:24]
        with self._locked():
            call = self._bump(self.directory / "sessions" / f"{session_id}.json", role)
            nth = self._bump(self.directory / "workdirs" / f"{workdir_key}.json", role)
        return call, nth


def _result_event(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("type") == "result":
            return event
    return None


class ScriptedRunner:
    """Runner that replays canned steps instead of calling a model."""

    name = "scripted"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.counters = CallCounters(settings.state_dir / "scripted")
        self.sandbox = Sandbox(settings)

    async def run(
        self,
        role: str,
        prompt: str,
        workdir: Path,
        *,
        session_id: str | None = None,
        timeout: float,
        env: Mapping[str, str] | None = None,
        log: LogSink | None = None,
        read_only: Sequence[Path] = (),
    ) -> RunnerResult:
        """Play the step that matches this call in a sandboxed child process and report its result."""
        started = time.monotonic()
        steps = load_steps(self.settings, env)
        if session_id is not None and not _SESSION_RE.match(session_id):
            return RunnerResult(1, session_id, "", error=f"invalid scripted session id {session_id!r}")
        if session_id is not None and not self.counters.knows(session_id):
            # Like a real CLI asked to resume a session its home does not hold.
            return RunnerResult(1, session_id, "", error=f"no session {session_id} on this host")
        session = session_id or f"scripted-{uuid.uuid4().hex}"
        call, nth = self.counters.bump(session, workdir, role)
        step = select_step(steps, role, prompt, call=call, nth=nth)
        if step is None:
            return RunnerResult(
                1, session, "", duration=time.monotonic() - started,
                error=f"no scripted step for role {role} (call {call} in session, {nth} in workdir)",
            )
        payload = {
            "write": [item.model_dump() for item in step.write],
            "replace": [item.model_dump() for item in step.replace],
            "run": step.run,
            "sleep": step.sleep,
            "hang": step.hang,
            "text": step.output_text(),
            "cost_usd": step.cost_usd,
            "tokens": step.tokens,
            "fail": step.fail.model_dump() if step.fail else None,
        }
        home = agent_home(self.settings.state_dir, self.name, workdir)
        child_env = agent_env(self.settings, {**(env or {}), "HOME": str(home)})
        python, _ = python_for_sandbox()
        command = [python, "-I", "-c", _AGENT_SOURCE.read_text()]
        # No model behind a scripted agent, but it gets the same network rules as a real one.
        allow = endpoint_destinations({**os.environ, **(env or {})}, ())
        spec = Confinement(await asyncio.to_thread(workdir.resolve), home, tuple(read_only), allow, child_env)
        async with self.sandbox.confine(command, spec) as confined:
            proc = await run_process(confined.args, cwd=workdir, env=confined.env, timeout=timeout,
                                     stdin=json.dumps(payload), on_line=log)
        event = _result_event(proc.stdout)
        duration = time.monotonic() - started
        if event is None:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            return RunnerResult(proc.exit_code or 1, session, "", duration=duration,
                                error=f"scripted agent produced no result: {tail}")
        text = str(event.get("text", ""))
        error = event.get("error")
        return RunnerResult(
            exit_code=proc.exit_code,
            session_id=session,
            text=text,
            json=extract_json(text),
            cost_usd=float(event.get("cost_usd", 0.0)),
            tokens=int(event.get("tokens", 0)),
            duration=duration,
            error=str(error) if error else None,
            network_blocked=confined.blocked,
        )
