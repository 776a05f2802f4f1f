"""``python -m agentz_app.fakemodel --port P --scenario file.json``: run the fake model alone."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aiohttp import web
from pydantic import ValidationError

from agentz_app.fakemodel.scenario import Scenario
from agentz_app.fakemodel.server import create_app


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, load the scenario and serve on 127.0.0.1 until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m agentz_app.fakemodel", description=__doc__)
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--scenario", type=Path, help="scenario JSON file (default: empty scenario)")
    args = parser.parse_args(argv)
    try:
        scenario = Scenario.from_json(args.scenario.read_text()) if args.scenario else Scenario()
    except (OSError, ValidationError) as exc:
        print(f"cannot load scenario {args.scenario}: {exc}", file=sys.stderr)
        return 2
    print(f"fake model listening on http://127.0.0.1:{args.port}", flush=True)
    web.run_app(create_app(scenario), host="127.0.0.1", port=args.port, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
