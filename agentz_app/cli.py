"""The ``agentz`` command line. Each command is a thin shell over a service function."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import click

from agentz_app.bootstrap import load_settings, open_database
from agentz_app.config import Settings
from agentz_app.errors import AgentZError

# The earlier CLI's flag spellings, still accepted.
SEED_ALIASES = {
    "--serve": ["serve"],
    "--list-runs": ["runs", "list"],
    "--inspect": ["runs", "inspect"],
    "--resume": ["runs", "resume"],
    "--cancel": ["runs", "cancel"],
    "--enqueue": ["enqueue"],
    "--demo": ["demo"],
    "--top": ["top"],
}


def rewrite_aliases(argv: Sequence[str]) -> list[str]:
    """Translate a leading seed-style flag (``--list-runs``) into its subcommand."""
    args = list(argv)
    for index, arg in enumerate(args):
        if arg in SEED_ALIASES:
            return args[:index] + SEED_ALIASES[arg] + args[index + 1 :]
        if not arg.startswith("-"):
            break
    return args


def _settings(ctx: click.Context) -> Settings:
    settings: Settings = ctx.obj["settings"]
    return settings


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


@click.group()
@click.option("--env-file", default=".env", show_default=True, help="Read settings from this file too.")
@click.pass_context
def cli(ctx: click.Context, env_file: str) -> None:
    """Agent-Z: a GitHub App that turns issues into reviewed pull requests."""
    ctx.ensure_object(dict)
    if ctx.invoked_subcommand == "demo":
        return  # the demo builds its own settings in a temporary workspace
    try:
        ctx.obj["settings"] = load_settings(env_file)
    except AgentZError as exc:
        raise click.ClickException(f"configuration error: {exc}") from None


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: accepts seed aliases, then runs the click group."""
    args = rewrite_aliases(sys.argv[1:] if argv is None else argv)
    cli.main(args=args, prog_name="agentz")


# Commands, grouped by area. Each is a thin shell over a service function.


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
    from agentz_app.web import run_receiver

    try:
        run_receiver(_settings(ctx), host=host, port=port)
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
    """Run every role under one supervisor (dashboard on a terminal)."""
    from agentz_app.supervisor import run_serve

    settings = _settings(ctx)
    db = open_database(settings)
    try:
        run_serve(settings, db, workers=workers, tui=sys.stdout.isatty() and not no_tui,
                  env_file=_root_env_file(ctx))
    finally:
        db.dispose()


@cli.command()
@click.option("--web-url", default=None, help="GitHub's web address for links (default from GITHUB_API_URL).")
@click.pass_context
def top(ctx: click.Context, web_url: str | None) -> None:
    """Show the dashboard for the configured database without starting processes."""
    from agentz_app.tui.app import run_top

    settings = _settings(ctx)
    db = open_database(settings)
    try:
        run_top(db, settings, web_base=web_url)
    finally:
        db.dispose()


@cli.command()
@click.option("--webhook-url", prompt="Public webhook URL (for example a smee.io channel)",
              help="Where GitHub sends webhooks, ending in /api/github/webhooks on your server.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Local port of the setup page (127.0.0.1).")
@click.option("--github-url", default="https://github.com", show_default=True, help="GitHub's web address.")
@click.option("--api-url", default=None, help="GitHub's API address (default GITHUB_API_URL).")
@click.option("--org", default=None, help="Register the App under this organisation instead of your account.")
@click.option("--env-file", "target_env", default=None, help="File to write the credentials to (default: --env-file).")
@click.option("--manifest", "manifest_path", default="app-manifest.yml", show_default=True,
              type=click.Path(dir_okay=False), help="The App manifest to register.")
@click.option("--open/--no-open", "open_browser", default=True, help="Open the setup page in a browser.")
@click.pass_context
def setup(ctx: click.Context, webhook_url: str, port: int, github_url: str, api_url: str | None, org: str | None,
          target_env: str | None, manifest_path: str, open_browser: bool) -> None:
    """Register the GitHub App with GitHub's manifest flow and write its credentials to .env."""
    import asyncio
    import webbrowser
    from pathlib import Path

    from agentz_app.setup import SetupOptions, run_setup

    settings = _settings(ctx)
    options = SetupOptions(
        webhook_url=webhook_url, github_url=github_url, api_url=api_url or settings.github_api_url, org=org,
        port=port, env_file=Path(target_env or _root_env_file(ctx)), state_dir=settings.state_dir,
        manifest_path=Path(manifest_path),
    )

    def ready(url: str) -> None:
        click.echo(f"Open {url} to create the GitHub App (Ctrl-C to give up).")
        if open_browser:
            webbrowser.open(url)

    try:
        result = asyncio.run(run_setup(options, on_ready=ready))
    except AgentZError as exc:
        raise click.ClickException(str(exc)) from None
    creds = result.credentials
    click.echo(f"Registered App {creds.slug} (id {creds.app_id}); credentials written to {result.env_file}, "
               f"key to {result.key_path}.")
    if creds.html_url:
        click.echo(f"Install it on your repositories: {creds.html_url}/installations/new")
