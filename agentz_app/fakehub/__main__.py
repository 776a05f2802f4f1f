"""Run the fake GitHub as a standalone process: ``python -m agentz_app.fakehub``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path

from agentz_app.fakehub.faults import FaultConfig
from agentz_app.fakehub.hub import FakeHub


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(prog="python -m agentz_app.fakehub", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--root", type=Path, required=True, help="directory for the bare git repositories")
    parser.add_argument("--webhook-url", default=None)
    parser.add_argument("--secret", default="fakehub-secret", help="webhook secret")
    parser.add_argument("--app-id", type=int, default=1)
    parser.add_argument("--app-slug", default="agent-z")
    parser.add_argument("--private-key-path", type=Path, default=None, help="App key; JWTs are verified against it")
    parser.add_argument("--state", type=Path, default=None, help="JSON file the state is saved to after each change")
    parser.add_argument("--faults", default=None, help="fault settings as JSON, e.g. '{\"server_error_rate\": 0.1}'")
    parser.add_argument("--ci-concurrency", type=int, default=1, choices=(1, 2))
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    """Start the hub, print its URLs as one JSON line, and serve until SIGINT/SIGTERM."""
    faults = FaultConfig.from_dict(json.loads(args.faults)) if args.faults else None
    key = args.private_key_path.read_text("utf-8") if args.private_key_path else None
    hub = FakeHub(args.root, webhook_url=args.webhook_url, webhook_secret=args.secret, app_id=args.app_id,
                  app_slug=args.app_slug, private_key_pem=key, state_path=args.state, faults=faults,
                  ci_concurrency=args.ci_concurrency)
    url = await hub.start(args.host, args.port)
    print(json.dumps({"api_url": url, "git_url_template": hub.git_url_template}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await hub.stop()


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    try:
        asyncio.run(serve(args))
    except (ValueError, OSError) as exc:
        print(f"fakehub: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
