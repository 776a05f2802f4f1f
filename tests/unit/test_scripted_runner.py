"""The scripted backend: canned steps, matching, counters shared across processes, timeouts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from agentz_app.config import Settings
from agentz_app.errors import AgentTimeout, ConfigError
from tests.waiting import wait_for
from workers.runners.logfile import run_log, run_log_path
from workers.runners.registry import get_runner
from workers.runners.scripted import STEPS_VARIABLE, ScriptedRunner, load_steps


def _inline(steps: Sequence[Mapping[str, object]]) -> dict[str, str]:
    return {STEPS_VARIABLE: json.dumps(steps)}


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


async def test_step_writes_files_and_returns_json_as_structured_output(settings: Settings, workdir: Path) -> None:
    steps = [{"role": "developer", "write": [{"path": "src/app.py", "content": "print('hi')\n"}],
              "text": "Done.", "json": {"summary": "added app"}, "cost_usd": 0.25, "tokens": 42}]
    result = await ScriptedRunner(settings).run("developer", "do it", workdir, timeout=30, env=_inline(steps))
    assert result.ok, result.error
    assert (workdir / "src/app.py").read_text() == "print('hi')\n"
    assert result.json == {"summary": "added app"}
    assert result.text.startswith("Done.")
    assert "```json" in result.text
    assert (result.cost_usd, result.tokens) == (0.25, 42)
    assert result.session_id
    assert result.session_id.startswith("scripted-")


async def test_replace_edits_existing_file_and_fails_when_text_is_absent(settings: Settings, workdir: Path) -> None:
    (workdir / "README.md").write_text("status: TODO\n")
    steps = [{"role": "developer", "match": "first", "replace": [{"path": "README.md", "old": "TODO", "new": "done"}]},
             {"role": "developer", "replace": [{"path": "README.md", "old": "missing", "new": "x"}]}]
    runner = ScriptedRunner(settings)
    ok = await runner.run("developer", "first edit", workdir, timeout=30, env=_inline(steps))
    assert ok.ok
    assert (workdir / "README.md").read_text() == "status: done\n"
    bad = await runner.run("developer", "second edit", workdir, timeout=30, env=_inline(steps))
    assert not bad.ok
    assert bad.error
    assert "not found" in bad.error


async def test_steps_are_chosen_by_role_and_prompt_match(settings: Settings, workdir: Path) -> None:
    steps = [{"role": "task_lead", "match": "issue #2", "text": "plan two"},
             {"role": "task_lead", "regex": r"issue #1\b", "text": "plan one"},
             {"role": "reviewer", "text": "review"}]
    runner = ScriptedRunner(settings)
    env = _inline(steps)
    assert (await runner.run("task_lead", "Plan issue #1 now", workdir, timeout=30, env=env)).text == "plan one"
    assert (await runner.run("task_lead", "Plan issue #2 now", workdir, timeout=30, env=env)).text == "plan two"
    assert (await runner.run("reviewer", "Review issue #1", workdir, timeout=30, env=env)).text == "review"
    missing = await runner.run("task_lead", "Plan issue #10", workdir, timeout=30, env=env)
    assert missing.exit_code != 0
    assert missing.error
    assert "no scripted step" in missing.error


async def test_resumed_session_continues_call_sequence_in_another_runner(settings: Settings, workdir: Path) -> None:
    steps = [{"role": "reviewer", "call": 1, "json": {"verdict": "changes_requested"}},
             {"role": "reviewer", "call": 2, "json": {"verdict": "approve"}}]
    env = _inline(steps)
    first = await ScriptedRunner(settings).run("reviewer", "review", workdir, timeout=30, env=env)
    second = await ScriptedRunner(settings).run("reviewer", "review again", workdir, timeout=30, env=env,
                                                session_id=first.session_id)
    fresh = await ScriptedRunner(settings).run("reviewer", "review", workdir, timeout=30, env=env)
    assert first.json == {"verdict": "changes_requested"}
    assert second.json == {"verdict": "approve"}
    assert second.session_id == first.session_id
    assert fresh.json == {"verdict": "changes_requested"}


def test_call_counter_is_shared_between_separate_processes(settings: Settings, workdir: Path, tmp_path: Path) -> None:
    steps_file = tmp_path / "steps.yaml"
    steps_file.write_text(textwrap.dedent("""\
        steps:
          - {role: reviewer, nth: 1, text: first}
          - {role: reviewer, nth: 2, text: second}
        """))
    script = textwrap.dedent(f"""\
        import asyncio, pathlib
        from agentz_app.config import Settings
        from workers.runners.scripted import ScriptedRunner
        settings = Settings.load(None, state_dir={str(settings.state_dir)!r}, scripted_agent_file={str(steps_file)!r})
        result = asyncio.run(ScriptedRunner(settings).run("reviewer", "r", pathlib.Path({str(workdir)!r}), timeout=30))
        print(result.text)
        """)
    env = {key: value for key, value in os.environ.items() if key != STEPS_VARIABLE}
    outputs = [subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
               .stdout.strip() for _ in range(2)]
    assert outputs == ["first", "second"]


async def test_path_escaping_the_workdir_is_rejected(settings: Settings, workdir: Path) -> None:
    with pytest.raises(ConfigError, match="inside the workdir"):
        load_steps(settings, _inline([{"role": "developer", "write": [{"path": "../evil.txt", "content": "x"}]}]))
    outside = workdir.parent / "outside"
    outside.mkdir()
    (workdir / "link").symlink_to(outside)
    steps = [{"role": "developer", "write": [{"path": "link/evil.txt", "content": "x"}]}]
    result = await ScriptedRunner(settings).run("developer", "p", workdir, timeout=30, env=_inline(steps))
    assert not result.ok
    assert result.error
    assert "escapes the workdir" in result.error
    assert not (outside / "evil.txt").exists()


async def test_failure_step_reports_exit_code_and_error(settings: Settings, workdir: Path) -> None:
    steps = [{"role": "developer", "fail": {"exit_code": 3, "error": "model overloaded"}}]
    result = await ScriptedRunner(settings).run("developer", "p", workdir, timeout=30, env=_inline(steps))
    assert (result.exit_code, result.error) == (3, "model overloaded")
    assert not result.ok


async def test_hanging_step_times_out_and_its_process_group_is_killed(settings: Settings, workdir: Path) -> None:
    lines: list[str] = []
    steps = [{"role": "developer", "hang": True}]
    with pytest.raises(AgentTimeout):
        await ScriptedRunner(settings).run("developer", "p", workdir, timeout=2, env=_inline(steps), log=lines.append)
    commands = [json.loads(line)["command"] for line in lines if '"hang"' in line]
    assert commands, lines
    await wait_for(lambda: not _running(commands[0]), timeout=10, what=f"{commands[0]!r} gone")


def _running(command: str) -> bool:
    """True while a process with exactly this command line exists (pids differ inside a sandbox)."""
    wanted = command.replace(" ", "\0").encode() + b"\0"
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if (entry / "cmdline").read_bytes() == wanted:
                return True
        except OSError:
            continue
    return False


async def test_step_output_is_streamed_to_the_run_log(settings: Settings, workdir: Path) -> None:
    steps = [{"role": "developer", "write": [{"path": "a.txt", "content": "a"}],
              "text": "token ghp_abcdefghijklmnopqrstuvwxyz0123"}]
    runner = get_runner("scripted", settings)
    with run_log(settings, "run-7", "developer") as sink:
        result = await runner.run("developer", "p", workdir, timeout=30, env=_inline(steps), log=sink)
    assert result.ok
    logged = run_log_path(settings.logs_dir, "run-7", "developer").read_text()
    assert '"path": "a.txt"' in logged
    assert "ghp_abcdefghijklmnopqrstuvwxyz0123" not in logged


async def test_sleep_delays_the_answer(settings: Settings, workdir: Path) -> None:
    started = time.monotonic()
    result = await ScriptedRunner(settings).run(
        "scheduler", "rank", workdir, timeout=30, env=_inline([{"sleep": 0.3, "json": [3, 1]}]))
    assert result.json == [3, 1]
    assert time.monotonic() - started >= 0.3


def test_unknown_backend_is_a_config_error(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="unknown agent backend"):
        get_runner("gpt-cli", settings)


def test_invalid_regex_in_steps_is_a_config_error(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="invalid regular expression"):
        load_steps(settings, _inline([{"role": "developer", "regex": "("}]))
