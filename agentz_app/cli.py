"""The ``agentz`` command line. Each command is a thin shell over a service function."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click
from sqlalchemy.exc import DBAPIError

from agentz_app import bootstrap
from agentz_app.bootstrap import load_settings, open_database
from agentz_app.config import InvalidSettings, Settings
from agentz_app.errors import AgentZError
from agentz_app.store.db import Database, DatabaseUnavailable, connection_problem
from agentz_app.store.runs import RunQueue

# The earlier CLI's flag spellings, still accepted; each names today's subcommand.
SEED_ALIASES = {
    "--serve": ["serve"],
    "--issue": ["issue"],
    "--enqueue": ["enqueue"],
    "--list-runs": ["runs", "list"],
    "--inspect": ["runs", "inspect"],
    "--resume": ["runs", "resume"],
    "--cancel": ["runs", "cancel"],
    "--loop": ["loop"],
    "--planner": ["planner"],
    "--worker": ["worker"],
    "--scheduler": ["scheduler"],
    "--schedule-once": ["schedule-once"],
    "--reconciler": ["reconciler"],
    "--reconcile-once": ["reconcile-once"],
    "--plan-next": ["plan-next"],
    "--run-next": ["run-next"],
    "--help-all": ["help-all"],
    "--demo": ["demo"],
    "--top": ["top"],
}

# Root options that take a value, skipped when looking for the seed flag.
_ROOT_VALUE_OPTIONS = frozenset({"--env-file"})


def rewrite_aliases(argv: Sequence[str]) -> list[str]:
    """Translate the first seed-style flag (``--list-runs``) before any subcommand into that subcommand."""
    args = list(argv)
    index = 0
    while index < len(args):
        arg = args[index]
        if arg in SEED_ALIASES:
            return args[:index] + SEED_ALIASES[arg] + args[index + 1 :]
        if arg in _ROOT_VALUE_OPTIONS:
            index += 2
            continue
        if not arg.startswith("-"):
            break
        index += 1
    return args


def _settings(ctx: click.Context) -> Settings:
    settings: Settings = ctx.obj["settings"]
    return settings


def _echo_json(value: object) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


class AgentzGroup(click.Group):
    """The root group: an Agent-Z error or a lost database from any command is one clear line, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except InvalidSettings as exc:
            lines = "".join(f"\n  {variable}: {message}" for variable, message in exc.problems)
            raise click.ClickException(f"invalid configuration ({len(exc.problems)} "
                                       f"setting{'s' if len(exc.problems) > 1 else ''}):{lines}") from None
        except AgentZError as exc:
            raise click.ClickException(str(exc)) from None
        except DBAPIError as exc:
            raise click.ClickException(str(DatabaseUnavailable(f"database error: {connection_problem(exc)}"))) from None


@click.group(cls=AgentzGroup, invoke_without_command=True)
@click.option("--env-file", default=".env", show_default=True, help="Read settings from this file too.")
@click.pass_context
def cli(ctx: click.Context, env_file: str) -> None:
    """Agent-Z: a GitHub App that turns issues into reviewed pull requests.

    With no command on a terminal: pick an issue of GITHUB_REPO, answer the Task Lead's
    impact analysis, and watch it become a pull request.
    """
    ctx.ensure_object(dict)
    if ctx.invoked_subcommand is None and not (sys.stdin.isatty() and sys.stdout.isatty()):
        click.echo(ctx.get_help())
        return
    if ctx.invoked_subcommand in ("demo", "config", "help-all"):
        return  # the demo builds its own settings in a temporary workspace; config reads only its file
    ctx.obj["settings"] = load_settings(env_file)
    if ctx.invoked_subcommand is None:
        settings = _settings(ctx)
        db = open_database(settings)
        try:
            bootstrap.run_picker(settings, db)
        finally:
            db.dispose()


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: accepts seed aliases, then runs the click group."""
    args = rewrite_aliases(sys.argv[1:] if argv is None else argv)
    cli.main(args=args, prog_name="agentz")


# Commands, grouped by area. Each is a thin shell over a service function.


@cli.command("help-all")
@click.pass_context
def help_all(ctx: click.Context) -> None:
    """List every command (pool roles, one-shot and tuning commands) and every setting with its default."""
    from agentz_app.help_all import render_help_all

    click.echo(render_help_all(cli, SEED_ALIASES))


@cli.command()
@click.pass_context
def migrate(ctx: click.Context) -> None:
    """Create or upgrade the database schema."""
    open_database(_settings(ctx)).dispose()
    click.echo("database is up to date")


@cli.command()
@click.option("--host", default=None, help="Address to listen on (default RECEIVER_HOST).")
@click.option("--port", type=int, default=None, help="Port to listen on (default RECEIVER_PORT).")
@click.pass_context
def receiver(ctx: click.Context, host: str | None, port: int | None) -> None:
    """Receive GitHub webhooks and process the deliveries inbox."""
    try:
        bootstrap.run_receiver(_settings(ctx), host=host, port=port)
    except AgentZError as exc:
        raise click.ClickException(str(exc)) from None


# Operator surfaces: supervisor, dashboard, App setup.


def _root_env_file(ctx: click.Context) -> str:
    return str(ctx.find_root().params.get("env_file") or ".env")


@cli.command()
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Worker processes (default SERVICE_WORKERS, else MAX_PARALLEL_TASKS).")
@click.option("--no-tui", is_flag=True, help="Plain log lines even on a terminal.")
@click.pass_context
def serve(ctx: click.Context, workers: int | None, no_tui: bool) -> None:
    """Check this host as `agentz doctor` does, then run every role under one supervisor."""
    from agentz_app.doctor import ROLES, problems_line, render

    settings = _settings(ctx)
    checks = _doctor_checks(settings, ROLES, migrated_at_start=True)
    for check in checks:
        if check.passed and check.detail.startswith("warning:"):
            click.echo(check.detail, err=True)
    if not all(check.passed for check in checks):
        click.echo(render([check for check in checks if not check.passed]), err=True)
        raise click.ClickException(f"not starting: {problems_line(checks)}. Run `agentz doctor` for every check.")
    db = open_database(settings)
    try:
        bootstrap.run_serve(settings, db, workers=workers, tui=sys.stdout.isatty() and not no_tui,
                  env_file=_root_env_file(ctx))
    finally:
        db.dispose()


def _doctor_checks(settings: Settings, roles: Sequence[str], *, migrated_at_start: bool = False,
                   sandbox_only: bool = False) -> list[Any]:
    """Configuration, database, agent CLI and sandbox checks for ``roles``, composed from both layers.

    ``migrated_at_start`` is serve's view: a new or older database passes (serve migrates it) and
    AGENT_SANDBOX=none is a warning. For ``agentz doctor`` an unconfined agent fails the probe.
    """
    from agentz_app import doctor
    from agentz_app.agent_credentials import backends_in_use
    from workers.runners.probe import cli_checks
    from workers.sandbox_check import self_test

    checks: list[doctor.Check] = []
    if not sandbox_only:
        checks += doctor.config_checks(settings, roles)
        checks += doctor.database_checks(settings, migrated_at_start=migrated_at_start)
        checks += asyncio.run(cli_checks(settings, backends_in_use(settings, tuple(roles))))
    if sandbox_only or doctor.SANDBOXED_ROLES & set(roles):
        warning = doctor.sandbox_mode_check(settings) if migrated_at_start else None
        if warning is not None:
            checks.append(warning)
        else:
            fix = "see README, \"Security model\" (apt-get install bubblewrap; unprivileged user namespaces)"
            checks += [doctor.Check(c.name, c.passed, c.detail, "" if c.passed else fix)
                       for c in asyncio.run(self_test(settings))]
    return checks


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--role", "roles", multiple=True, help="Check only what this role needs (repeatable; default all).")
@click.option("--sandbox", "sandbox_only", is_flag=True, help="Only the sandbox self-test.")
@click.pass_context
def doctor(ctx: click.Context, as_json: bool, roles: tuple[str, ...], sandbox_only: bool) -> None:
    """Check this host for the roles `agentz serve` starts: configuration, App key, database, agent CLIs,
    model credentials, state folder, and the sandbox (a probe tries what a hostile agent would; each
    attempt must fail). Lists every problem with its fix; exits 1 when a check fails."""
    from agentz_app.doctor import ROLES, check_roles, checks_json, render

    try:
        wanted = check_roles(roles) if roles else ROLES
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--role") from None
    checks = _doctor_checks(_settings(ctx), wanted, sandbox_only=sandbox_only)
    click.echo(checks_json(checks) if as_json else render(checks))
    failed = [check for check in checks if not check.passed]
    if failed:
        if not as_json:
            click.echo(f"\n{len(failed)} check{'s' if len(failed) > 1 else ''} failed; each line above says how "
                       "to fix it.", err=True)
        ctx.exit(1)


@cli.command()
@click.option("--web-url", default=None, help="GitHub's web address for links (default from GITHUB_API_URL).")
@click.pass_context
def top(ctx: click.Context, web_url: str | None) -> None:
    """Show the dashboard for the configured database without starting processes."""
    from agentz_app.tui.app import run_top

    settings = _settings(ctx)
    db = open_database(settings, create=False)
    try:
        run_top(db, settings, web_base=web_url)
    finally:
        db.dispose()


@cli.command()
@click.option("--webhook-url", prompt="Public webhook URL (for example a smee.io channel)",
              help="Where GitHub sends webhooks, ending in /api/github/webhooks on your server.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address the local page listens on (0.0.0.0 inside a container, with the port published).")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Local port of the setup page.")
@click.option("--github-url", default="https://github.com", show_default=True,
              help="GitHub's web address; for GitHub Enterprise Server, https://<your host>.")
@click.option("--api-url", default=None,
              help="GitHub's API address (default: api.github.com, or <github-url>/api/v3 for Enterprise Server).")
@click.option("--org", default=None, help="Register the App under this organisation instead of your account.")
@click.option("--env-file", "target_env", default=None, help="File to write the credentials to (default: --env-file).")
@click.option("--manifest", "manifest_path", default=None, type=click.Path(dir_okay=False),
              help="The App manifest to register (default: the one shipped with Agent-Z).")
@click.option("--open/--no-open", "open_browser", default=True, help="Open the setup page in a browser.")
@click.pass_context
def setup(ctx: click.Context, webhook_url: str, host: str, port: int, github_url: str, api_url: str | None,
          org: str | None, target_env: str | None, manifest_path: str | None, open_browser: bool) -> None:
    """Register the GitHub App with GitHub's manifest flow and write its credentials to .env."""
    import webbrowser
    from pathlib import Path

    from agentz_app.setup import PUBLIC_GITHUB, SetupOptions, api_url_for, packaged_manifest, run_setup

    settings = _settings(ctx)
    if api_url is None:
        is_public = github_url.rstrip("/") == PUBLIC_GITHUB
        api_url = settings.github_api_url if is_public else api_url_for(github_url)
    options = SetupOptions(
        webhook_url=webhook_url, github_url=github_url, api_url=api_url, org=org,
        host=host, port=port, env_file=Path(target_env or _root_env_file(ctx)), state_dir=settings.state_dir,
        manifest_path=Path(manifest_path) if manifest_path else None,
        allow_workflow_changes=settings.allow_workflow_changes,
    )
    click.echo(f"App manifest: {options.manifest_path or packaged_manifest()}")

    def ready(url: str) -> None:
        click.echo(f"Open {url} to create the GitHub App (Ctrl-C to give up).")
        if open_browser:
            webbrowser.open(url)

    try:
        result = asyncio.run(run_setup(options, on_ready=ready, on_step=lambda line: click.echo(f"- {line}")))
    except KeyboardInterrupt:
        raise click.ClickException("setup interrupted; nothing was written") from None
    creds = result.credentials
    click.echo(f"Registered App {creds.slug} (id {creds.app_id}); credentials written to {result.env_file}, "
               f"key to {result.key_path}.")
    if creds.html_url:
        click.echo(f"Install it on your repositories: {creds.html_url}/installations/new")
    click.echo("Then check this host with `agentz doctor`.")


# Run queue: enqueue, runs list|inspect|resume|cancel, reconciler.


@contextmanager
def _run_queue(ctx: click.Context, *, create: bool = False) -> Iterator[RunQueue]:
    """Open the database for one command (an existing one unless ``create``); store errors become clean CLI errors."""
    settings = _settings(ctx)
    db = open_database(settings, create=create)
    try:
        yield RunQueue(db, lease_seconds=settings.lease_seconds)
    except AgentZError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        db.dispose()


@cli.command()
@click.argument("number", type=click.IntRange(min=1))
@click.option("--repo", default=None, help="Repository owner/name (default GITHUB_REPO).")
@click.option("--force", is_flag=True,
              help="Develop it even if it carries a SCHEDULER_BLOCK_LABELS label; a closed or assigned issue, or "
                   "one another open pull request addresses, is still cancelled.")
@click.option("--plan-only", is_flag=True, help="Stop after planning.")
@click.pass_context
def enqueue(ctx: click.Context, number: int, repo: str | None, force: bool, plan_only: bool) -> None:
    """Queue issue NUMBER for delivery (idempotent while a run is live)."""
    target = repo or _settings(ctx).github_repo
    if not target:
        raise click.UsageError("no repository given: pass --repo owner/name or set GITHUB_REPO")
    with _run_queue(ctx, create=True) as queue:
        run, created = queue.intake.enqueue(
            target, number, force=force, mode="plan_only" if plan_only else "full", requested_by="cli",
            reason="enqueued from the command line",
        )
    if created:
        click.echo(f"enqueued run {run.id} for {target}#{number}")
    else:
        click.echo(f"run {run.id} for {target}#{number} is already {run.status}")


@cli.group()
def runs() -> None:
    """List, inspect, resume and cancel runs."""


@runs.command("list")
@click.option("--status", "statuses", multiple=True, help="Only runs in this status (repeatable).")
@click.option("--limit", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def runs_list(ctx: click.Context, statuses: tuple[str, ...], limit: int, as_json: bool) -> None:
    """Show runs, newest first."""
    from agentz_app.domain.states import Status
    from agentz_app.run_views import run_record, runs_table
    from agentz_app.secrets import configured_secret_values
    from agentz_app.store.models import now

    unknown = sorted(set(statuses) - {s.value for s in Status})
    if unknown:
        raise click.BadParameter(f"unknown status {', '.join(unknown)}", param_hint="--status")
    with _run_queue(ctx) as queue:
        found = queue.reads.list_runs(statuses=statuses or None, limit=limit)
    secrets = configured_secret_values(_settings(ctx))
    if as_json:
        _echo_json([run_record(run, secret_values=secrets) for run in found])
    else:
        click.echo(runs_table(found, now(), secret_values=secrets))


@runs.command("inspect")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.pass_context
def runs_inspect(ctx: click.Context, run_id: str, as_json: bool) -> None:
    """Show a run's plan, state, claims and event timeline."""
    from agentz_app.run_views import event_record, render_inspect, run_record
    from agentz_app.secrets import configured_secret_values
    from agentz_app.store.models import now

    with _run_queue(ctx) as queue:
        run = queue.reads.find(run_id)
        events = queue.reads.events(run.id)
        claims = queue.reads.claims_of(run.id)
    secrets = configured_secret_values(_settings(ctx))
    if as_json:
        _echo_json({"run": run_record(run, secret_values=secrets), "claims": claims,
                    "events": [event_record(e, secret_values=secrets) for e in events]})
    else:
        click.echo(render_inspect(run, events, claims, now(), secret_values=secrets))


@runs.command("resume")
@click.argument("run_id")
@click.pass_context
def runs_resume(ctx: click.Context, run_id: str) -> None:
    """Requeue a failed, needs_human or cancelled run, or make a deferred or stuck run claimable."""
    with _run_queue(ctx) as queue:
        run = queue.moves.resume(queue.reads.find(run_id).id, reason="resumed from the command line", actor="cli")
    click.echo(f"run {run.id} is {run.status}")


@runs.command("cancel")
@click.argument("run_id")
@click.option("--reason", default="cancelled from the command line", show_default=True)
@click.pass_context
def runs_cancel(ctx: click.Context, run_id: str, reason: str) -> None:
    """Cancel a run: claims are released, its worker loses the lease, and GitHub shows it.

    The issue's labels, the status comment (with the reason) and the run's check runs
    are updated by the next worker or planner that reports (within seconds while
    ``agentz serve`` runs).
    """
    with _run_queue(ctx) as queue:
        run = queue.moves.cancel(queue.reads.find(run_id).id, reason=reason, actor="cli")
    click.echo(f"run {run.id} is {run.status}")


@cli.command()
@click.pass_context
def reconciler(ctx: click.Context) -> None:
    """Reconcile leases, merged PRs and deferred runs every RECONCILE_INTERVAL_SECONDS."""
    try:
        bootstrap.run_reconciler(_settings(ctx))
    except KeyboardInterrupt:
        pass
    except AgentZError as exc:
        raise click.ClickException(str(exc)) from None


@cli.command("reconcile-once")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def reconcile_once_command(ctx: click.Context, as_json: bool) -> None:
    """Run one reconciler pass and report what changed."""
    from agentz_app.reconciler import reconcile_once

    settings = _settings(ctx)
    db = open_database(settings)
    try:
        report = reconcile_once(db, settings)
    except AgentZError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        db.dispose()
    if as_json:
        _echo_json(report.as_dict())
    else:
        click.echo(report.summary())


# Inbox and retention: deliveries list|retry, prune.


@contextmanager
def _database(ctx: click.Context) -> Iterator[Database]:
    """Open the existing database for one command; store errors become clean CLI errors."""
    db = open_database(_settings(ctx), create=False)
    try:
        yield db
    except AgentZError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        db.dispose()


@cli.group()
def deliveries() -> None:
    """List webhook deliveries and retry dead ones."""


@deliveries.command("list")
@click.option("--dead", "dead_only", is_flag=True, help="Only deliveries that stopped being retried.")
@click.option("--limit", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def deliveries_list(ctx: click.Context, dead_only: bool, limit: int, as_json: bool) -> None:
    """Show deliveries, newest first, with their attempts and last error."""
    from agentz_app.delivery_views import deliveries_table, delivery_record
    from agentz_app.ingress.inbox import list_deliveries

    with _database(ctx) as db:
        found = list_deliveries(db, dead_only=dead_only, limit=limit)
    if as_json:
        _echo_json([delivery_record(record) for record in found])
    else:
        click.echo(deliveries_table(found, dead_only=dead_only))


@deliveries.command("retry")
@click.argument("delivery")
@click.pass_context
def deliveries_retry(ctx: click.Context, delivery: str) -> None:
    """Make dead delivery DELIVERY (row id or X-GitHub-Delivery) pending again with zero attempts."""
    from agentz_app.ingress.inbox import retry_delivery

    with _database(ctx) as db:
        record = retry_delivery(db, delivery)
    click.echo(f"delivery {record.id} is pending again; the receiver processes it on its next pass")


@cli.command()
@click.option("--dry-run", is_flag=True, help="Only report what would be removed.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def prune(ctx: click.Context, dry_run: bool, as_json: bool) -> None:
    """Remove deliveries, events, run logs, agent homes and mirrors past their RETAIN_* age."""
    from agentz_app.store.retention import prune as prune_now

    settings = _settings(ctx)
    with _database(ctx) as db:
        report = prune_now(db, settings, dry_run=dry_run)
    if as_json:
        _echo_json(report.as_dict())
    else:
        click.echo(report.summary())


@cli.command()
@click.pass_context
def scheduler(ctx: click.Context) -> None:
    """Schedule issues when snapshots change (debounced), resyncing every RESYNC_INTERVAL_SECONDS."""
    try:
        asyncio.run(bootstrap.run_scheduler(_settings(ctx)))
    except KeyboardInterrupt:
        pass
    except AgentZError as exc:
        raise click.ClickException(str(exc)) from None


@cli.command("schedule-once")
@click.option("--json", "as_json", is_flag=True, help="Print the candidates as JSON.")
@click.option("--force", is_flag=True,
              help="Admit issues the Scheduler Agent rejected as high-risk (every gate still applies).")
@click.pass_context
def schedule_once_command(ctx: click.Context, as_json: bool, force: bool) -> None:
    """Run one scheduling pass; print each candidate with its gate verdict or rank and reason."""
    from agentz_app.scheduling.service import describe

    settings = _settings(ctx)
    try:
        reports = asyncio.run(bootstrap.run_schedule_once(settings, force=force))
    except AgentZError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        _echo_json([report.as_dict() for report in reports])
    elif not reports:
        click.echo("no open issues in the snapshots")
    else:
        for report in reports:
            click.echo(describe(report))


# Planner and worker roles, one-shot stage runs, one issue in the foreground.


def _run_role(ctx: click.Context, role: str, once: bool) -> list[Any]:
    try:
        return asyncio.run(bootstrap.run_role(_settings(ctx), role, once=once))
    except KeyboardInterrupt:
        return []
    except AgentZError as exc:
        raise click.ClickException(str(exc)) from None


def _echo_outcomes(outcomes: list[Any], role: str) -> None:
    if not outcomes:
        click.echo(f"{role}: nothing to claim")
    for outcome in outcomes:
        click.echo(outcome.summary())


@cli.command()
@click.option("--once", is_flag=True, help="Claim at most one run, then exit.")
@click.pass_context
def worker(ctx: click.Context, once: bool) -> None:
    """Develop, review, submit and CI-fix runs, one at a time."""
    outcomes = _run_role(ctx, "worker", once)
    if once:
        _echo_outcomes(outcomes, "worker")


@cli.command()
@click.option("--once", is_flag=True, help="Claim at most one run, then exit.")
@click.pass_context
def planner(ctx: click.Context, once: bool) -> None:
    """Turn queued runs into plans, one at a time."""
    outcomes = _run_role(ctx, "planner", once)
    if once:
        _echo_outcomes(outcomes, "planner")


@cli.command("plan-next")
@click.pass_context
def plan_next(ctx: click.Context) -> None:
    """Claim the next queued run, plan it and exit."""
    _echo_outcomes(_run_role(ctx, "planner", True), "planner")


@cli.command("run-next")
@click.pass_context
def run_next(ctx: click.Context) -> None:
    """Claim the next ready (or CI-fix) run, run its stages and exit."""
    _echo_outcomes(_run_role(ctx, "worker", True), "worker")


@cli.command("issue")
@click.argument("number", type=click.IntRange(min=1))
@click.option("--repo", default=None, help="Repository owner/name (default GITHUB_REPO).")
@click.pass_context
def issue_command(ctx: click.Context, number: int, repo: str | None) -> None:
    """Deliver issue NUMBER unattended in the foreground: plan, develop, review, PR, CI, done."""
    settings = _settings(ctx)
    target = repo or settings.github_repo
    if not target:
        raise click.UsageError("no repository given: pass --repo owner/name or set GITHUB_REPO")
    _require_ready(settings, ("planner", "worker"))
    try:
        run = asyncio.run(bootstrap.deliver_issue(settings, target, number, echo=click.echo))
    except KeyboardInterrupt:
        raise click.ClickException("interrupted; the run resumes with `agentz run-next` or a worker") from None
    except AgentZError as exc:
        raise click.ClickException(str(exc)) from None
    pr = f", pull request #{run.pr_number}" if run.pr_number else ""
    click.echo(f"run {run.id} finished as {run.status}{pr}")
    if run.status not in ("done", "merged", "awaiting_approval"):
        ctx.exit(1)


def _require_ready(settings: Settings, roles: Sequence[str]) -> None:
    """Fail before anything is queued unless the App credentials, state folder, agent CLIs and model
    credentials the roles need are in place (the database is opened, and checked, afterwards)."""
    from agentz_app.agent_credentials import backends_in_use
    from agentz_app.doctor import config_checks, render
    from workers.runners.probe import cli_checks

    checks = config_checks(settings, roles)
    checks += asyncio.run(cli_checks(settings, backends_in_use(settings, tuple(roles))))
    failed = [check for check in checks if not check.passed]
    if failed:
        click.echo(render(failed), err=True)
        raise click.ClickException("nothing was queued: fix the problems above (`agentz doctor` checks everything)")


@cli.command()
@click.option("--backend", type=click.Choice(["scripted", "claude", "codex", "opencode"]), default="scripted",
              show_default=True, help="Agent backend; real CLIs talk to the in-package fake model.")
@click.option("--workers", type=click.IntRange(1, 8), default=2, show_default=True, help="Worker processes.")
@click.option("--timeout", type=click.FloatRange(min=10), default=110.0, show_default=True,
              help="Give up after this many seconds.")
@click.option("--keep", is_flag=True, help="Keep the temporary workspace for inspection.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def demo(backend: str, workers: int, timeout: float, keep: bool, as_json: bool) -> None:
    """Run the whole loop offline: fake GitHub, every role, sample issues, green PRs."""
    from agentz_app.demo.model import cli_dir_for
    from agentz_app.demo.report import render_table
    from agentz_app.demo.runner import DemoInterrupted, DemoOptions, run_demo
    from agentz_app.logs import configure_logging

    configure_logging("console", "warning")
    if backend != "scripted":
        try:
            found = cli_dir_for(backend, os.environ)
        except LookupError as exc:
            raise click.ClickException(
                f"{exc}: install it, or run `bash scripts/install-agent-clis.sh` and export the folder it "
                "prints as AGENTZ_CLI_DIR") from None
        if found is not None:
            os.environ["AGENTZ_CLI_DIR"] = found
    echo = (lambda line: click.echo(line, err=True)) if as_json else click.echo
    options = DemoOptions(backend=backend, workers=workers, timeout=timeout, keep=keep)
    try:
        report = asyncio.run(run_demo(options, echo, probes=bootstrap.host_probes()))
    except DemoInterrupted as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(128 + exc.signum) from None
    except AgentZError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
    else:
        click.echo("")
        click.echo(render_table(report))
        if keep:
            click.echo(f"workspace kept at {report.workspace}")
    if not report.ok:
        raise SystemExit(1)


@cli.command()
@click.argument("count", type=click.IntRange(min=1))
@click.option("--force", is_flag=True,
              help="Admit issues the Scheduler Agent rates high-risk (every gate still applies).")
@click.pass_context
def loop(ctx: click.Context, count: int, force: bool) -> None:
    """Schedule and deliver up to COUNT issues of GITHUB_REPO, one after another, in the foreground."""
    settings = _settings(ctx)
    db = open_database(settings)
    try:
        runs = asyncio.run(bootstrap.run_loop(settings, db, count, force=force, echo=click.echo))
    except AgentZError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        db.dispose()
    for run in runs:
        pr = f" PR #{run.pr_number}" if run.pr_number else ""
        click.echo(f"#{run.issue_number}: {run.status}{pr}")
    if any(run.status not in ("done", "merged") for run in runs):
        ctx.exit(1)


@cli.group()
def config() -> None:
    """The per-repository configuration file, .github/agent-z.yml."""


@config.command("schema")
def config_schema() -> None:
    """Print the JSON schema of .github/agent-z.yml."""
    from agentz_app.repo_config import schema_text

    click.echo(schema_text())


@config.command("check")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
def config_check(path: str) -> None:
    """Validate a .github/agent-z.yml file; print each problem with its line number."""
    from agentz_app.repo_config import MAX_CONFIG_BYTES, InvalidRepoConfig, parse_config

    with click.open_file(path, "rb") as stream:
        content = stream.read(MAX_CONFIG_BYTES + 1)
    try:
        parse_config(content)
    except InvalidRepoConfig as exc:
        for problem in exc.problems:
            click.echo(f"{path}:{problem.line or 1}: {problem.field + ': ' if problem.field else ''}{problem.message}",
                       err=True)
        raise SystemExit(1) from None
    click.echo(f"{path}: valid")
