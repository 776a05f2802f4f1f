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
