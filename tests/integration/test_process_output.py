"""Agent output of any shape: huge lines, no newlines at all, binary garbage. The worker survives it.

Real child processes write to the pipes; memory is measured with tracemalloc around the call.
"""

from __future__ import annotations

import json
import sys
import tracemalloc

from agentz_app.procs import LOG_LINE_BYTES, LineSplitter, OutputCapture, run_process
from agentz_app.secrets import REDACTED
from tests import secret_samples as samples
from workers.runners.claude import parse_stream as parse_claude
from workers.runners.output import json_lines

MB = 1024 * 1024


def _child(code: str) -> list[str]:
    return [sys.executable, "-c", "import sys, json\nout = sys.stdout.buffer\n" + code]


async def test_a_70_kb_line_reaches_the_log_cut_and_is_still_parsed() -> None:
    event = {"type": "result", "subtype": "success", "is_error": False, "result": "done", "session_id": "s",
             "diff": "x" * 70_000}
    lines: list[str] = []
    code = f"out.write({(json.dumps(event) + chr(10)).encode()!r})"
    result = await run_process(_child(code), on_line=lines.append, timeout=60)
    assert result.exit_code == 0
    cut = len(json.dumps(event)) - LOG_LINE_BYTES
    assert len(lines) == 1
    assert lines[0].endswith(f"[agent-z: {cut} more bytes of this line not logged]")
    parsed = parse_claude(result.stdout, result.stderr, result.exit_code)
    assert parsed.ok
    assert parsed.text == "done"


async def test_a_10_mb_line_between_events_is_skipped_and_the_events_around_it_are_parsed() -> None:
    code = ("out.write(b'{\"type\": \"system\", \"session_id\": \"s1\"}\\n')\n"
            "out.write(b'{\"type\": \"assistant\", \"blob\": \"' + b'y' * (10 * 1024 * 1024) + b'\"}\\n')\n"
            "out.write(b'{\"type\": \"result\", \"subtype\": \"success\", \"result\": \"ok\"}\\n')")
    lines: list[str] = []
    tracemalloc.start()
    try:
        result = await run_process(_child(code), on_line=lines.append, timeout=120)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [event.get("type") for event in json_lines(result.stdout)] == ["system", "result"]
    assert len(lines) == 3
    assert all(len(line) < LOG_LINE_BYTES + 100 for line in lines)
    assert parse_claude(result.stdout, result.stderr, 0).session_id == "s1"
    assert peak < 64 * MB


async def test_200_mb_without_a_newline_keeps_memory_bounded_and_says_what_was_dropped() -> None:
    code = ("out.write(b'{\"type\": \"thread.started\", \"thread_id\": \"t\"}\\n')\n"
            "chunk = b'z' * (1024 * 1024)\n"
            "for _ in range(200):\n    out.write(chunk)\n")
    lines: list[str] = []
    tracemalloc.start()
    try:
        result = await run_process(_child(code), on_line=lines.append, timeout=300, max_output_bytes=4 * MB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0
    assert len(result.stdout) < 5 * MB
    header = len('{"type": "thread.started", "thread_id": "t"}\n')
    dropped = 200 * MB + header - 4 * MB
    assert f"[agent-z: {dropped} bytes of output dropped here]" in result.stdout
    assert json_lines(result.stdout) == [{"type": "thread.started", "thread_id": "t"}]
    assert len(lines) == 2
    assert lines[1].endswith(f"{200 * MB - LOG_LINE_BYTES} more bytes of this line not logged]")
    assert peak < 32 * MB


async def test_binary_garbage_is_logged_and_captured_without_crashing() -> None:
    code = ("import os\nrandom = os.urandom(3 * 1024 * 1024)\nout.write(random)\n"
            "out.write(b'\\n{\"type\": \"result\", \"subtype\": \"success\", \"result\": \"fine\"}\\n')\n"
            "sys.stderr.buffer.write(random[:100000])")
    lines: list[str] = []
    result = await run_process(_child(code), on_line=lines.append, timeout=120)
    assert result.exit_code == 0
    assert lines
    parsed = parse_claude(result.stdout, result.stderr, 0)
    assert parsed.ok
    assert parsed.text == "fine"


async def test_secrets_in_output_lines_never_reach_the_sink() -> None:
    pem = samples.rsa_pem()
    code = f"out.write({(pem + 'token ' + samples.GITHUB_TOKEN + chr(10)).encode()!r})"
    lines: list[str] = []
    await run_process(_child(code), on_line=lines.append, timeout=60)
    logged = "\n".join(lines)
    assert samples.GITHUB_TOKEN not in logged
    assert f"token {REDACTED}" in logged
    assert not any(body in logged for body in samples.pem_body_lines(pem))


def test_output_capture_keeps_head_and_tail() -> None:
    capture = OutputCapture(10)
    for piece in (b"0123", b"456789abcdef", b"ghij"):
        capture.feed(piece)
    assert capture.text() == "01234\n[agent-z: 10 bytes of output dropped here]\nfghij"
    small = OutputCapture(100)
    small.feed(b"all of it")
    assert small.text() == "all of it"


def test_line_splitter_joins_lines_across_chunks_and_flushes_the_last() -> None:
    lines: list[str] = []
    splitter = LineSplitter(lines.append, limit=8)
    for piece in (b"ab", b"c\r\nde", b"\n\n0123456789abc", b"\nlast"):
        splitter.feed(piece)
    splitter.close()
    assert lines == ["abc", "de", "", "01234567 … [agent-z: 5 more bytes of this line not logged]", "last"]
