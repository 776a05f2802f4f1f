"""Hostile traffic against a real receiver: its peak memory, and valid deliveries during the flood.

``python -m bench flood [--big N] [--bombs N] [--slow N]`` starts ``agentz receiver`` on a
SQLite file and, once it is ready, two load processes at the same moment:

- the attacker sends, all at once, ``--big`` (60) bodies of 24 MiB with a well-formed but
  wrong signature (the receiver must read every byte to find out), ``--bombs`` (20) gzip
  bombs (2 MiB declaring ``Content-Encoding: gzip`` that inflate to 2 GiB each) and
  ``--slow`` (20) bodies trickling one byte every 2 s;
- the sender POSTs a validly signed ~10 KB ``issues`` delivery every 50 ms for as long as
  the slow bodies may stay open (the read timeout, 10 s, plus 1 s).

The receiver's VmRSS is sampled every 20 ms from ``/proc``. Printed::

    flood: big=<n> bombs=<n> slow=<n> rss_idle_mb=<n> rss_peak_mb=<n> rss_after_mb=<n>
           big_answers=<status counts> bomb_answers=<...> slow_answers=<...> slow_open_max_s=<n>
           valid=<n> valid_p50_ms=<n> valid_p99_ms=<n> valid_answers=<...>
           lost=<valid deliveries not stored> missed_targets=<n>

A big body that cannot arrive whole within the read timeout (a busy machine) is answered
408 instead of 401; both mean it was refused without being kept. ``missed_targets``
counts the targets missed: peak RSS under 150 MB and valid p99 under 1 s (``lost`` must
be 0 as well); ``--check`` fails on either. An answer of ``0`` means the
connection closed without one. ``--quick`` sends 8 big bodies, 5 bombs and 5 slow
bodies (a byte a second) against a 2 s read timeout. The module is also the entry point of the load
processes: ``python -m bench.flood attack SPEC.json`` and ``python -m bench.flood send SPEC.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import hmac
import json
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.common import BenchOptions, Figures, percentile

SECRET = "bench-flood-secret"
WEBHOOK_PATH = "/api/github/webhooks"
BIG_BYTES = 24 * 1024 * 1024
BOMB_INFLATED_BYTES = 2 * 1024**3
SLOW_DECLARED_BYTES = 10_000
SLOW_INTERVAL_SECONDS = 2.0
VALID_INTERVAL_SECONDS = 0.05
RSS_TARGET_MB = 150.0
P99_TARGET_MS = 1000.0
_CHUNK = 64 * 1024
_START_DELAY = 1.0
_PROCESS_TIMEOUT = 300.0


@dataclass(frozen=True)
class FloodSize:
    """How much hostile traffic one flood sends, and the receiver's read timeout."""

    big: int
    bombs: int
    slow: int
    read_timeout: float

    @property
    def slow_interval(self) -> float:
        """Seconds between two bytes of a slow body: at least two bytes arrive before it is cut."""
        return min(SLOW_INTERVAL_SECONDS, self.read_timeout / 2)

    @property
    def duration(self) -> float:
        """How long valid deliveries keep coming: past the moment the last slow body is cut."""
        return self.read_timeout + 1.0


# Requests on raw connections (the attacker does not behave like a polite client) ---


def request_head(url: str, headers: dict[str, str]) -> bytes:
    """The request line and headers of a POST to ``url``."""
    parts = urlsplit(url)
    lines = [f"POST {parts.path} HTTP/1.1", f"Host: {parts.netloc}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def hostile_headers(length: int, **extra: str) -> dict[str, str]:
    """Headers that pass every check made before the body: the signature is only wrong."""
    return {
        "Content-Type": "application/json",
        "Content-Length": str(length),
        "X-GitHub-Event": "issues",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": "sha256=" + "0" * 64,
        **extra,
    }


async def _answer(reader: asyncio.StreamReader, started: float) -> tuple[int, float]:
    """The status of the response (0 when the connection closed first) and when it came."""
    line = await reader.readline()
    fields = line.split()
    status = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
    return status, time.monotonic() - started


async def raw_post(url: str, headers: dict[str, str], chunks: AsyncIterator[bytes], *,
                   read_timeout: float) -> tuple[int, float]:
    """POST ``chunks`` on a fresh connection, stopping once the server answers; ``(status, seconds to it)``.

    Once the body is sent (or the server stopped reading it), the answer is awaited ``read_timeout`` seconds.
    """
    parts = urlsplit(url)
    started = time.monotonic()
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    answer = asyncio.create_task(_answer(reader, started))
    try:
        writer.write(request_head(url, headers))
        async for chunk in chunks:
            if answer.done():
                break
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    try:
        return await asyncio.wait_for(answer, read_timeout)
    except (TimeoutError, ConnectionError, OSError, ValueError):
        return 0, time.monotonic() - started
    finally:
        answer.cancel()
        writer.close()


async def repeated(block: bytes, total: int) -> AsyncIterator[bytes]:
    """``total`` bytes made of ``block`` repeated, in pieces of at most ``len(block)``."""
    sent = 0
    while sent < total:
        piece = block[: total - sent]
        sent += len(piece)
        yield piece


async def trickle(total: int, interval: float) -> AsyncIterator[bytes]:
    """One byte every ``interval`` seconds."""
    for _ in range(total):
        yield b" "
        await asyncio.sleep(interval)


def gzip_bomb(inflated: int) -> bytes:
    """A gzip stream of concatenated members that inflates to about ``inflated`` zero bytes."""
    member_size = 64 * 1024 * 1024
    member = gzip.compress(bytes(member_size), compresslevel=9)
    return member * max(1, inflated // member_size)


async def attack(spec: dict[str, Any]) -> dict[str, Any]:
    """The attacker process: every hostile request at once; the status and duration of each."""
    url, timeout = str(spec["url"]), float(spec["timeout"])
    bomb = gzip_bomb(int(spec["bomb_inflated"]))
    block = b"a" * _CHUNK
    await asyncio.sleep(max(0.0, float(spec["start_at"]) - time.time()))

    def big() -> Any:
        return raw_post(url, hostile_headers(BIG_BYTES), repeated(block, BIG_BYTES), read_timeout=timeout)

    def bombs() -> Any:
        headers = hostile_headers(len(bomb), **{"Content-Encoding": "gzip"})
        return raw_post(url, headers, repeated(bomb, len(bomb)), read_timeout=timeout)

    def slow() -> Any:
        chunks = trickle(SLOW_DECLARED_BYTES, float(spec["slow_interval"]))
        return raw_post(url, hostile_headers(SLOW_DECLARED_BYTES), chunks, read_timeout=timeout)

    kinds: list[tuple[str, Callable[[], Any]]] = [
        *(("big", big) for _ in range(int(spec["big"]))),
        *(("bombs", bombs) for _ in range(int(spec["bombs"]))),
        *(("slow", slow) for _ in range(int(spec["slow"]))),
    ]
    outcomes = await asyncio.gather(*(make() for _, make in kinds), return_exceptions=True)
    results: dict[str, list[tuple[int, float]]] = {"big": [], "bombs": [], "slow": []}
    for (kind, _), outcome in zip(kinds, outcomes, strict=True):
        results[kind].append(outcome if isinstance(outcome, tuple) else (0, 0.0))
    return results


def issue_payload(size: int = 10_000) -> dict[str, Any]:
    """A small ``issues.opened`` payload padded to about ``size`` bytes."""
    return {
        "action": "opened",
        "issue": {"number": 1, "id": 20_000_001, "title": "Flood benchmark issue", "body": "x" * size,
                  "state": "open", "labels": [], "assignees": [], "user": {"login": "octocat"},
                  "updated_at": "2024-05-01T10:00:00Z"},
        "repository": {"id": 1, "full_name": "bench/flood", "default_branch": "main"},
        "installation": {"id": 1},
        "sender": {"login": "octocat"},
    }


def signed_delivery(template: dict[str, Any], number: int, secret: bytes) -> tuple[str, bytes, dict[str, str]]:
    """One valid ``issues`` delivery: ``(delivery id, body, headers)``."""
    delivery_id = str(uuid.uuid4())
    template["issue"]["number"], template["issue"]["id"] = number, 20_000_000 + number
    body = json.dumps(template, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "issues",
        "X-GitHub-Delivery": delivery_id,
        "X-Hub-Signature-256": "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest(),
    }
    return delivery_id, body, headers


async def send_valid(spec: dict[str, Any]) -> dict[str, Any]:
    """The sender process: one signed delivery every interval during the flood; id, status, latency each."""
    import aiohttp

    template = json.loads(await asyncio.to_thread(Path(spec["template"]).read_text))
    secret = str(spec["secret"]).encode()
    interval, count = float(spec["interval"]), int(float(spec["duration"]) / float(spec["interval"]))
    prepared = [signed_delivery(template, number, secret) for number in range(1, count + 1)]
    results: list[tuple[str, int, float]] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def post(delivery_id: str, body: bytes, headers: dict[str, str]) -> None:
            started = time.perf_counter()
            try:
                async with session.post(str(spec["url"]), data=body, headers=headers) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError, OSError):
                status = 0
            results.append((delivery_id, status, (time.perf_counter() - started) * 1000))

        start_at = float(spec["start_at"])
        await asyncio.sleep(max(0.0, start_at - time.time()))
        tasks = []
        for index, request in enumerate(prepared):
            await asyncio.sleep(max(0.0, start_at + index * interval - time.time()))
            tasks.append(asyncio.create_task(post(*request)))
        await asyncio.gather(*tasks)
    return {"requests": results}


# The scenario ------------------------------------------------------------------------


def answers(statuses: Sequence[int]) -> str:
    """Status counts as ``401x55,503x5`` (most common first)."""
    return ",".join(f"{status}x{count}" for status, count in Counter(statuses).most_common()) or "none"


def flood_figures(size: FloodSize, rss: tuple[float, float, float], attacked: dict[str, Any],
                  valid: list[tuple[str, int, float]], stored: Sequence[str]) -> Figures:
    """The printed figures, from what the processes measured and what the inbox holds."""
    idle, peak, after = rss
    latencies = [latency for _, _, latency in valid]
    p99 = percentile(latencies, 0.99)
    stored_ids = set(stored)
    lost = sum(1 for delivery_id, _, _ in valid if delivery_id not in stored_ids)
    missed = int(peak >= RSS_TARGET_MB) + int(p99 >= P99_TARGET_MS)
    return {
        "big": size.big,
        "bombs": size.bombs,
        "slow": size.slow,
        "rss_idle_mb": idle,
        "rss_peak_mb": peak,
        "rss_after_mb": after,
        "big_answers": answers([status for status, _ in attacked["big"]]),
        "bomb_answers": answers([status for status, _ in attacked["bombs"]]),
        "slow_answers": answers([status for status, _ in attacked["slow"]]),
        "slow_open_max_s": round(max((seconds for _, seconds in attacked["slow"]), default=0.0), 1),
        "valid": len(valid),
        "valid_p50_ms": round(percentile(latencies, 0.50), 1),
        "valid_p99_ms": round(p99, 1),
        "valid_answers": answers([status for _, status, _ in valid]),
        "lost": lost,
        "missed_targets": missed,
    }


def _run_helper(command: str, spec: dict[str, Any], env: dict[str, str], workdir: Path) -> Any:
    from bench.services import run_json

    path = workdir / f"{command}.json"
    path.write_text(json.dumps(spec))
    return run_json(["-m", "bench.flood", command, str(path)], env=env, workdir=workdir, timeout=_PROCESS_TIMEOUT)


def measure(size: FloodSize) -> Figures:
    """Start a receiver, flood it while sending valid deliveries, audit its inbox."""
    from bench.common import sqlite_database
    from bench.ingest import stored_delivery_ids
    from bench.services import RssSampler, hermetic_env, read_rss_kb, start_receiver

    with tempfile.TemporaryDirectory(prefix="agentz-bench-flood-", ignore_cleanup_errors=True) as folder, \
            sqlite_database() as db_url:
        workdir = Path(folder)
        template = workdir / "payload.json"
        template.write_text(json.dumps(issue_payload()))
        env = hermetic_env({
            "DATABASE_URL": db_url,
            "GITHUB_WEBHOOK_SECRET": SECRET,
            "STATE_DIR": str(workdir / "state"),
            "LOG_LEVEL": "warning",
            "LOG_FORMAT": "json",
            "WEBHOOK_READ_TIMEOUT_SECONDS": str(size.read_timeout),
        })
        receiver, base = start_receiver(env, workdir)
        try:
            idle_kb = read_rss_kb(receiver.pid) or 0
            url = f"{base}{WEBHOOK_PATH}"
            start_at = time.time() + _START_DELAY
            attack_spec = {"url": url, "start_at": start_at, "big": size.big, "bombs": size.bombs,
                           "slow": size.slow, "bomb_inflated": BOMB_INFLATED_BYTES,
                           "slow_interval": size.slow_interval, "timeout": size.duration + 30}
            send_spec = {"url": url, "start_at": start_at, "template": str(template), "secret": SECRET,
                         "interval": VALID_INTERVAL_SECONDS, "duration": size.duration}
            with RssSampler(receiver.pid) as rss, ThreadPoolExecutor(max_workers=2) as pool:
                attacked = pool.submit(_run_helper, "attack", attack_spec, env, workdir)
                sent = pool.submit(_run_helper, "send", send_spec, env, workdir)
                attack_result, send_result = attacked.result(), sent.result()
            if not receiver.alive():
                raise RuntimeError(f"receiver died during the flood:\n{receiver.log_tail()}")
            after_kb = read_rss_kb(receiver.pid) or 0
        finally:
            receiver.stop()
        valid = [(str(d), int(s), float(ms)) for d, s, ms in send_result["requests"]]
        rss_figures = (round(idle_kb / 1024, 1), rss.peak_mb, round(after_kb / 1024, 1))
        return flood_figures(size, rss_figures, attack_result, valid, stored_delivery_ids(db_url))


def _parse(extra: Sequence[str], quick: bool) -> FloodSize:
    parser = argparse.ArgumentParser(prog="python -m bench flood", add_help=False)
    parser.add_argument("--big", type=int, default=8 if quick else 60)
    parser.add_argument("--bombs", type=int, default=5 if quick else 20)
    parser.add_argument("--slow", type=int, default=5 if quick else 20)
    args, _ = parser.parse_known_args(list(extra))
    if min(args.big, args.bombs, args.slow) < 0:
        parser.error("--big, --bombs and --slow must not be negative")
    return FloodSize(big=args.big, bombs=args.bombs, slow=args.slow, read_timeout=2.0 if quick else 10.0)


def scenario(options: BenchOptions) -> Figures:
    """Peak receiver RSS under hostile traffic, and the latency of valid deliveries meanwhile."""
    return measure(_parse(options.extra, options.quick))


def main(argv: Sequence[str] | None = None) -> int:
    """Load process entry point: ``attack SPEC.json`` or ``send SPEC.json``; prints JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.flood")
    parser.add_argument("command", choices=["attack", "send"])
    parser.add_argument("spec", type=Path)
    args = parser.parse_args(argv)
    spec = json.loads(args.spec.read_text())
    result = asyncio.run(attack(spec) if args.command == "attack" else send_valid(spec))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
