"""``python -m bench sandbox``: what the agent sandbox adds to one agent call.

A no-op command (``/bin/true``) runs through :func:`agentz_app.procs.run_process` directly
and through :meth:`workers.sandbox.Sandbox.confine` with the allowlist network (bwrap,
the proxy in this process and the bridge inside), alternating, 50 times each (10 with
``--quick``). Figures: median milliseconds of each and the difference, plus the open
network variant. Target: the overhead below 50 ms per call.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from agentz_app.config import Settings
from agentz_app.procs import run_process
from bench.common import BenchOptions, Figures
from workers.sandbox import Confinement, Sandbox, bwrap_works

TARGET_MS = 50.0


async def _timed(command: list[str], sandbox: Sandbox | None, spec: Confinement) -> float:
    started = time.perf_counter()
    if sandbox is None:
        result = await run_process(command, cwd=spec.workdir, env=dict(spec.env), timeout=30)
    else:
        async with sandbox.confine(command, spec) as confined:
            result = await run_process(confined.args, cwd=spec.workdir, env=confined.env, timeout=30)
    if result.exit_code != 0:
        raise RuntimeError(f"no-op call failed: {result.stderr.strip()[-300:]}")
    return (time.perf_counter() - started) * 1000


async def _measure(rounds: int) -> Figures:
    with tempfile.TemporaryDirectory(prefix="agentz-bench-sandbox-") as scratch:
        root = Path(scratch)
        workdir, home = root / "work", root / "home"
        workdir.mkdir()
        home.mkdir()
        spec = Confinement(workdir, home, env={"HOME": str(home), "PATH": "/usr/bin:/bin"})
        base = Settings.load(None, state_dir=root / "state", database_url=f"sqlite:///{root / 'db'}")
        allowlist = Sandbox(base.model_copy(update={"agent_sandbox": "bwrap", "agent_network": "allowlist"}))
        open_net = Sandbox(base.model_copy(update={"agent_sandbox": "bwrap", "agent_network": "open"}))
        samples: dict[str, list[float]] = {"direct": [], "allowlist": [], "open": []}
        command = ["/bin/true"]
        for _ in range(rounds):
            samples["direct"].append(await _timed(command, None, spec))
            samples["allowlist"].append(await _timed(command, allowlist, spec))
            samples["open"].append(await _timed(command, open_net, spec))
    median = {name: statistics.median(values) for name, values in samples.items()}
    overhead = median["allowlist"] - median["direct"]
    return {
        "calls": rounds,
        "direct_ms": median["direct"],
        "sandboxed_ms": median["allowlist"],
        "overhead_ms": overhead,
        "overhead_open_network_ms": median["open"] - median["direct"],
        "missed_targets": int(overhead >= TARGET_MS),
    }


def scenario(options: BenchOptions) -> Figures:
    """Median cost of a sandboxed no-op agent call against a direct one."""
    if not bwrap_works():
        return {"skipped": "bubblewrap not usable on this host"}
    return asyncio.run(_measure(10 if options.quick else 50))
