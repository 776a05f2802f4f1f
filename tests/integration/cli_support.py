"""Shared set-up for the real-CLI conformance tests: binaries, fake model, process checks."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

from agentz_app.config import Settings
from agentz_app.domain.runner import Runner
from agentz_app.errors import AgentTimeout
from agentz_app.fakemodel import FakeModelServer, FileWrite, Scenario, ScenarioStep
from tests.waiting import wait_for

INSTALL_HINT = "run `export AGENTZ_CLI_DIR=$(bash scripts/install-agent-clis.sh)`"


def cli_dir_or_skip(binary: str) -> str:
    """The npm prefix holding ``binary``; skip the test visibly when it is not installed."""
    cli_dir = os.environ.get("AGENTZ_CLI_DIR")
    if not cli_dir:
        script = Path(__file__).resolve().parents[2] / "scripts" / "install-agent-clis.sh"
        # --check prints the cache folder only when the install is complete; it never downloads.
        done = subprocess.run(["bash", str(script), "--check"], capture_output=True, text=True, check=False)
        cli_dir = done.stdout.strip() if done.returncode == 0 else ""
    if not cli_dir or not os.access(Path(cli_dir) / "node_modules" / ".bin" / binary, os.X_OK):
        pytest.skip(f"{binary} CLI not installed; {INSTALL_HINT}")
    return cli_dir


def write_then_answer(path: str, content: str, answer: Mapping[str, object]) -> Scenario:
    """A developer step writing one file then answering with JSON, and a slow step for timeouts."""
    return Scenario(steps=[
        ScenarioStep(role="developer", match="stall", stall=60),
        ScenarioStep(role="developer", match="reject", status=400),
        ScenarioStep(role="developer", call=1, writes=[FileWrite(path=path, content=content)],
                     text="Wrote the file.", json_value=answer),
        ScenarioStep(role="developer", text="Second turn.", json_value={"turn": 2}),
    ])


def closed_port_url() -> str:
    """A base URL on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def processes_in(workdir: Path) -> list[int]:
    """Pids of live processes whose current directory is ``workdir``."""
    found = []
    target = str(workdir.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "cwd") == target and "\nState:\tZ" not in (entry / "status").read_text():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def cli_env(cli_dir: str, server: FakeModelServer | None = None, *, base_url: str | None = None) -> dict[str, str]:
    """The run env pointing a CLI at the fake model."""
    url = base_url or (server.base_url if server else closed_port_url())
    return {"AGENTZ_CLI_DIR": cli_dir, "AGENTZ_MODEL_BASE_URL": url}


def make_settings(tmp_path: Path) -> Settings:
    return Settings.load(None, state_dir=tmp_path / "state", database_url=f"sqlite:///{tmp_path / 'a.db'}")


# Conformance checks shared by the three CLI test modules ------------------------------

ANSWER = {"summary": "created greeting", "files": ["greeting.txt"]}


async def check_writes_file_and_parses_json(runner: Runner, cli_dir: str, workdir: Path) -> None:
    """The agent writes a file through its own tool and its final JSON is parsed."""
    async with FakeModelServer(write_then_answer("greeting.txt", "hello\nworld\n", ANSWER)) as server:
        result = await runner.run("developer", "Implement issue #1", workdir, timeout=60,
                                  env=cli_env(cli_dir, server))
    assert result.ok, result.error
    assert (workdir / "greeting.txt").read_text().rstrip("\n") == "hello\nworld"
    assert result.json == ANSWER
    assert result.session_id
    assert result.tokens > 0
    assert {request.role for request in server.requests} == {"developer"}


async def check_resumes_session(runner: Runner, cli_dir: str, workdir: Path) -> None:
    """A second call with the first's session id continues that conversation."""
    async with FakeModelServer(write_then_answer("a.txt", "a\n", ANSWER)) as server:
        env = cli_env(cli_dir, server)
        first = await runner.run("developer", "First request for issue #1", workdir, timeout=60, env=env)
        assert first.ok, first.error
        seen = len(server.requests)
        second = await runner.run("developer", "Second request", workdir, timeout=60, env=env,
                                  session_id=first.session_id)
    assert second.ok, second.error
    assert second.session_id == first.session_id
    assert second.json == {"turn": 2}
    later = [request for request in server.requests[seen:] if request.turn.has_tools]
    assert later
    assert "Second request" in later[0].turn.prompt
    assert "First request for issue #1" in later[0].turn.context


async def check_timeout_kills_process_group(runner: Runner, cli_dir: str, workdir: Path, *,
                                            timeout: float = 5) -> None:
    """A stalled model makes the run time out; nothing the CLI started survives."""
    async with FakeModelServer(write_then_answer("a.txt", "a\n", ANSWER)) as server:
        with pytest.raises(AgentTimeout):
            await runner.run("developer", "please stall", workdir, timeout=timeout, env=cli_env(cli_dir, server))
        assert server.requests, "the CLI never reached the model"
    await wait_for(lambda: processes_in(workdir) == [], timeout=10, what=f"no process left in {workdir}")


async def check_server_down_fails(runner: Runner, cli_dir: str, workdir: Path, *, timeout: float) -> None:
    """With no model server the run fails (before ``timeout``) with an error saying so."""
    result = await runner.run("developer", "Implement issue #1", workdir, timeout=timeout,
                              env=cli_env(cli_dir, base_url=closed_port_url()))
    assert not result.ok
    assert result.exit_code != 0
    assert result.error
    assert re.search(r"connect|connection|refused|network|fetch", result.error, re.I), result.error


async def check_rejected_request_fails(runner: Runner, cli_dir: str, workdir: Path) -> None:
    """A model error response fails the run with an error message."""
    async with FakeModelServer(write_then_answer("a.txt", "a\n", ANSWER)) as server:
        result = await runner.run("developer", "reject this", workdir, timeout=60, env=cli_env(cli_dir, server))
    assert not result.ok
    assert result.error
    assert not (workdir / "a.txt").exists()
