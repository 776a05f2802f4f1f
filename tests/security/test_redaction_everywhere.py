"""Every kind of secret, on every surface where agent or error text is shown, comes out redacted.

Surfaces: structlog lines, run logs, check runs (title, summary, text, annotations),
status comments, pull request bodies, commit messages, stored run errors and their
events, and ``agentz runs list|inspect`` (text and JSON).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog
from click.testing import CliRunner

from agentz_app.cli import cli
from agentz_app.config import Settings
from agentz_app.domain.plans import Finding
from agentz_app.domain.states import CLAIMABLE_BY_PLANNER, Status
from agentz_app.logs import configure_logging, get_logger
from agentz_app.reporting.checks import check_run_payload, finding_annotations
from agentz_app.reporting.comments import StatusView, commit_message, pr_body, render_status_comment
from agentz_app.run_views import event_record, render_inspect, run_record, runs_table
from agentz_app.secrets import configured_secret_values
from agentz_app.store.db import Database
from agentz_app.store.migrate import migrate
from agentz_app.store.runs import RunQueue
from tests import secret_samples as samples
from workers.runners.logfile import run_log, run_log_path

ENVIRON = {"OPENAI_API_KEY": samples.PROVIDER_KEY}


def _secrets() -> list[tuple[str, str, list[str]]]:
    """(kind, text an agent or error might carry, substrings that must not appear)."""
    pem = samples.rsa_pem()
    line = samples.pem_body_lines(pem)[5]
    kinds = [(name, f"found {value} in the config", [value]) for name, value in samples.SHAPED]
    kinds += [
        ("private key block", f"cat key.pem:\n{samples.ec_pem()}done", samples.pem_body_lines(samples.ec_pem())),
        ("line of the app key", f"fixture = '{line}'", [line]),
        ("json web token", f"Authorization: Bearer {samples.JWT}", [samples.JWT]),
        ("database url", f"could not connect to postgresql://agentz:{samples.DB_PASSWORD}@db/agentz",
         [samples.DB_PASSWORD]),
        ("database password alone", f"PGPASSWORD={samples.DB_PASSWORD} psql", [samples.DB_PASSWORD]),
        ("webhook secret", f"GITHUB_WEBHOOK_SECRET={samples.WEBHOOK_SECRET}", [samples.WEBHOOK_SECRET]),
        ("provider key from the environment", f"echo $OPENAI_API_KEY -> {samples.PROVIDER_KEY}",
         [samples.PROVIDER_KEY]),
        ("aws secret key", f"aws_secret_access_key={samples.AWS_SECRET}", [samples.AWS_SECRET]),
    ]
    return kinds


SECRETS = _secrets()
IDS = [kind for kind, _, _ in SECRETS]


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    state = tmp_path_factory.mktemp("state")
    return Settings.load(None, state_dir=state, github_webhook_secret=samples.WEBHOOK_SECRET,
                         github_private_key=samples.rsa_pem(),
                         database_url=f"postgresql://agentz:{samples.DB_PASSWORD}@db.invalid/agentz")


@pytest.fixture(scope="module")
def values(settings: Settings) -> tuple[str, ...]:
    return configured_secret_values(settings, ENVIRON)


def _open_db(settings: Settings) -> Database:
    """A SQLite database next to the state (the configured PostgreSQL URL only supplies the password)."""
    db = Database.from_url(f"sqlite:///{settings.state_dir / 'agentz.db'}")
    migrate(db)
    return db


def _assert_clean(output: str, forbidden: list[str]) -> None:
    leaked = [secret[:10] + "…" for secret in forbidden if secret in output]
    assert leaked == [], f"leaked: {leaked}"


@pytest.mark.parametrize(("kind", "text", "forbidden"), SECRETS, ids=IDS)
def test_structlog_lines(kind: str, text: str, forbidden: list[str], values: tuple[str, ...]) -> None:
    buffer = io.StringIO()
    configure_logging("json", "debug", stream=buffer, secret_values=values)
    try:
        get_logger("t").warning("agent failed", error=text, details={"stderr": [text]})
        get_logger("t").error(text)
    finally:
        structlog.reset_defaults()
    _assert_clean(buffer.getvalue(), forbidden)
    assert "[redacted]" in buffer.getvalue()


@pytest.mark.parametrize(("kind", "text", "forbidden"), SECRETS, ids=IDS)
def test_run_logs(kind: str, text: str, forbidden: list[str], settings: Settings) -> None:
    live: list[str] = []
    run_id = f"r-{IDS.index(kind)}"
    with run_log(settings, run_id, "developer", also=live.append, environ=ENVIRON) as sink:
        for line in text.split("\n"):
            sink(line)
        sink(text)  # a multi-line string in one call stays one log line
    _assert_clean(run_log_path(settings.logs_dir, run_id, "developer").read_text() + "\n".join(live), forbidden)


@pytest.mark.parametrize(("kind", "text", "forbidden"), SECRETS, ids=IDS)
def test_check_runs_and_annotations(kind: str, text: str, forbidden: list[str], values: tuple[str, ...]) -> None:
    notes = finding_annotations([Finding(file="app.py", line=3, severity="major", message=text, blocking=True)])
    payload = check_run_payload("r1", "review", head_sha="a" * 40, status="completed", conclusion="failure",
                                title=text[:200], summary=text, text=text, notes=notes, secret_values=values)
    _assert_clean(json.dumps(payload), forbidden)


@pytest.mark.parametrize(("kind", "text", "forbidden"), SECRETS, ids=IDS)
def test_status_comments_pr_bodies_and_commit_messages(kind: str, text: str, forbidden: list[str],
                                                       values: tuple[str, ...]) -> None:
    view = StatusView(run_id="r1", status="failed", repo="o/r", issue_number=4, error=text, plan_markdown=text,
                      review_summary=text, notes=(text,))
    rendered = [render_status_comment(view, secret_values=values),
                pr_body(4, text, text, "r1", secret_values=values),
                commit_message(4, text, text, secret_values=values)]
    _assert_clean("\n".join(rendered), forbidden)


@pytest.fixture
def queue(settings: Settings, values: tuple[str, ...]) -> Iterator[RunQueue]:
    db = _open_db(settings)
    yield RunQueue(db, secret_values=values)
    db.dispose()


def _failed_run(queue: RunQueue, number: int, error: str) -> str:
    run, _ = queue.intake.enqueue("o/r", number, title="t")
    claimed = queue.leases.claim("planner", statuses=CLAIMABLE_BY_PLANNER, target=Status.PLANNING)
    assert claimed is not None
    queue.moves.transition(claimed[1], Status.FAILED, error=error)
    return run.id


@pytest.mark.parametrize(("kind", "text", "forbidden"), SECRETS, ids=IDS)
def test_stored_run_errors_and_their_events(kind: str, text: str, forbidden: list[str], queue: RunQueue) -> None:
    run_id = _failed_run(queue, 100 + IDS.index(kind), text)
    run = queue.reads.get(run_id)
    assert run.error
    assert "[redacted]" in run.error
    _assert_clean(run.error + json.dumps([event.payload for event in queue.reads.events(run_id)]), forbidden)


@pytest.mark.parametrize(("kind", "text", "forbidden"), SECRETS, ids=IDS)
def test_runs_inspect_views(kind: str, text: str, forbidden: list[str], settings: Settings,
                            values: tuple[str, ...]) -> None:
    db = _open_db(settings)
    try:
        raw = RunQueue(db)  # an error stored before redaction existed, or by another writer
        run_id = _failed_run(raw, 200 + IDS.index(kind), text)
        raw.moves.add_event(run_id, "note", detail=text)
        run, events = raw.reads.get(run_id), raw.reads.events(run_id)
    finally:
        db.dispose()
    views: list[Callable[[], object]] = [
        lambda: render_inspect(run, events, [], 0.0, secret_values=values),
        lambda: runs_table([run], 0.0, secret_values=values),
        lambda: json.dumps(run_record(run, secret_values=values), default=str),
        lambda: json.dumps([event_record(event, secret_values=values) for event in events], default=str),
    ]
    _assert_clean("\n".join(str(view()) for view in views), forbidden)


def test_agentz_runs_inspect_command_redacts_configured_secrets(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    database_url = f"sqlite:///{tmp_path / 'agentz.db'}"
    monkeypatch.setenv("STATE_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("GITHUB_WEBHOOK_SECRET", samples.WEBHOOK_SECRET)
    monkeypatch.setenv("OPENAI_API_KEY", samples.PROVIDER_KEY)
    db = Database.from_url(database_url)
    migrate(db)
    try:
        run_id = _failed_run(RunQueue(db), 7, f"agent echoed {samples.WEBHOOK_SECRET} and {samples.PROVIDER_KEY}")
    finally:
        db.dispose()
    try:
        for args in (["runs", "inspect", run_id], ["runs", "inspect", run_id, "--json"], ["runs", "list"],
                     ["runs", "list", "--json"]):
            result = CliRunner().invoke(cli, ["--env-file", str(tmp_path / "none.env"), *args])
            assert result.exit_code == 0, result.output
            _assert_clean(result.output, [samples.WEBHOOK_SECRET, samples.PROVIDER_KEY])
    finally:
        structlog.reset_defaults()
