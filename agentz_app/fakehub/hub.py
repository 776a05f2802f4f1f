"""FakeHub: the fake GitHub's model served over HTTP, with its lifecycle."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from agentz_app.fakehub import gitrepos
from agentz_app.fakehub.model import HubModel
from agentz_app.fakehub.server import create_app


class FakeHub(HubModel):
    """A fake GitHub: REST API, signed webhooks, real bare git repos, simulated CI and faults."""

    _runner: web.AppRunner | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve the API on ``host:port`` (0 = any free port) and return the API URL."""
        self.root.mkdir(parents=True, exist_ok=True)
        await self.emitter.start()
        self._runner = web.AppRunner(create_app(self), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        bound_port = int(sockets[0].getsockname()[1]) if sockets else port
        self.base_url = f"http://{host}:{bound_port}"
        for full_name in self.state.data["repos"]:
            path = gitrepos.repo_path(self.root, full_name)
            if path.exists():
                gitrepos.write_hook(path, notify_url=self.push_url, full_name=full_name)
        return self.base_url

    async def stop(self) -> None:
        """Stop serving, cancel CI (killing its processes) and webhook delivery."""
        await self.ci.stop()
        await self.emitter.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.changed()


async def run_forever(hub: FakeHub, host: str, port: int) -> None:
    """Start ``hub`` and serve until cancelled, then stop it."""
    await hub.start(host, port)
    try:
        await asyncio.Event().wait()
    finally:
        with contextlib.suppress(Exception):
            await hub.stop()
