"""The receiver's process carries only what it runs: no workers' pipeline, scheduler, supervisor or screens.

A fresh interpreter imports the command line (as ``agentz receiver`` does), builds the receiver
over an already migrated database with the composition root's GitHub opener, stores and processes
one signed delivery, and reports every module it imported along the way.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
from pathlib import Path

from agentz_app.store.db import Database
from agentz_app.store.migrate import migrate

REPO_ROOT = Path(__file__).resolve().parents[2]
SECRET = "receiver-imports-secret"

# Never needed to receive, store and process webhooks (each costs the receiver memory).
NOT_IN_THE_RECEIVER = (
    "workers",
    "agentz_app.scheduling",
    "agentz_app.supervisor",
    "agentz_app.reconciler",
    "agentz_app.tui",
    "agentz_app.demo",
    "agentz_app.fakehub",
    "agentz_app.fakemodel",
    "textual",
    "alembic",
)

RECEIVER_SCRIPT = """
import asyncio, hashlib, hmac, json, sys, time

from agentz_app import cli  # what ``python -m agentz_app receiver`` imports first
from agentz_app import bootstrap, web
from agentz_app.ingress.inbox import list_deliveries
from aiohttp.test_utils import TestClient, TestServer

BODY, SIGNATURE = sys.argv[1].encode(), sys.argv[2]


async def main() -> None:
    settings = bootstrap.load_settings(None)
    db = bootstrap.open_database(settings)
    app = web.create_app(settings, db, open_github=bootstrap.github_opener(settings, db))
    async with TestClient(TestServer(app)) as client:
        response = await client.post(web.WEBHOOK_PATH, data=BODY, headers={
            "Content-Type": "application/json", "X-GitHub-Event": "issues",
            "X-GitHub-Delivery": "imports-1", "X-Hub-Signature-256": SIGNATURE})
        assert response.status == 202, response.status
        deadline = time.monotonic() + 60
        while not [d for d in await db.run(list_deliveries, db) if d.state == "processed"]:
            if time.monotonic() > deadline:
                raise SystemExit("the delivery was not processed")
            await asyncio.sleep(0.05)
    db.dispose()


asyncio.run(main())
print(json.dumps(sorted(sys.modules)))
"""


def _receiver_modules(tmp_path: Path) -> list[str]:
    url = f"sqlite:///{tmp_path / 'agentz.db'}"
    db = Database.from_url(url)
    migrate(db)  # a restarted receiver: its schema is current
    db.dispose()
    payload = {"action": "opened", "issue": {"number": 1, "title": "Imports", "body": "", "labels": [],
                                             "user": {"login": "octocat"}},
               "repository": {"full_name": "acme/app"}, "sender": {"login": "octocat"}}
    body = json.dumps(payload)
    signature = "sha256=" + hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("GITHUB_", "AGENTZ_"))}
    env.update({"DATABASE_URL": url, "STATE_DIR": str(tmp_path / "state"), "GITHUB_WEBHOOK_SECRET": SECRET,
                "LOG_LEVEL": "warning", "PYTHONPATH": str(REPO_ROOT)})
    done = subprocess.run([sys.executable, "-c", RECEIVER_SCRIPT, body, signature], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    modules: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return modules


def test_receiver_stores_and_processes_deliveries_without_importing_other_roles(tmp_path: Path) -> None:
    modules = _receiver_modules(tmp_path)
    assert "agentz_app.ingress.inbox" in modules  # the script did build and run the receiver
    carried = sorted(m for m in modules if any(m == name or m.startswith(f"{name}.") for name in NOT_IN_THE_RECEIVER))
    assert carried == []
