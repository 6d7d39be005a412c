"""`appliance hardware`."""

from __future__ import annotations

import json
import logging

import click

from . import handle_errors, json_option, main, settings_from


@main.command()
@json_option
@click.option("--profile", default=None, help="Use this profile instead of the best match.")
@click.pass_context
@handle_errors
def hardware(ctx: click.Context, as_json: bool, profile: str | None) -> None:
    """Show the hardware facts, the matched profile and why."""
    from ..hardware import format_report
    from ..plugins import get_plugin_manager
    from ..services import discover_hardware

    logging.basicConfig(level="ERROR")
    settings = settings_from(ctx, profile=profile)
    report = discover_hardware(settings, get_plugin_manager()).report()
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))
