"""`appliance models promote | approve | rollback`: move versions through their stages.

A promotion to a serving stage first loads and warms the version up in this process,
so a version that does not load is marked ``failed`` and nothing else changes. The
registry is opened through :func:`~appliance.registry.opener.open_registry`, so the load
check decrypts with the plugin-supplied box key where a plugin supplies one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..lifecycle.stages import STAGES
from . import data_dir_option, handle_errors, json_option, settings_from
from . import echo_result as _echo
from .models import models
from .schedule import iso_time

if TYPE_CHECKING:
    from ..registry import Registry, VersionRecord


def _actor(by: str | None) -> str:
    return by or os.environ.get("USER") or "cli"


def load_check(registry: Registry, timeout_s: float) -> Callable[[VersionRecord], None]:
    """A promotion's loader: load the version in this process the way the server does
    (:func:`appliance.runtime.loading.load_check`), warm it up, close it."""
    from ..plugins import get_plugin_manager
    from ..runtime.catalog import BackendCatalog
    from ..runtime.loading import load_check as check

    return check(registry, BackendCatalog(get_plugin_manager()), timeout_s)


@models.command("promote")
@click.argument("name")
@click.argument("version")
@click.option("--to", "to", required=True, type=click.Choice(STAGES), help="Target stage.")
@click.option("--reason", default="", help="Why (kept in the stage history).")
@click.option("--breaking", is_flag=True, help="Accept a breaking signature change "
              "(it still needs approvals_required approvals).")
@click.option("--emergency", "emergency", default=None, metavar="REASON",
              help="Promote to production inside a freeze window, recording REASON.")
@click.option("--by", "by", default=None, help="Who promotes (default: $USER).")
@click.option("--at", "at", default=None, callback=iso_time, metavar="TIME",
              help="Schedule it instead, ISO 8601 (no offset = UTC); gates are judged then.")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def models_promote(ctx: click.Context, name: str, version: str, to: str, reason: str,
                   breaking: bool, emergency: str | None, by: str | None,
                   at: datetime | None, data_dir: Path | None, as_json: bool) -> None:
    """Move version VERSION of model NAME to stage --to, after its gates and a load check."""
    from ..lifecycle.promotion import promote
    from ..registry.opener import open_registry

    logging.basicConfig(level="WARNING")
    settings = settings_from(ctx, data_dir=data_dir)
    if at is not None:
        if breaking:
            raise click.UsageError("--breaking cannot be scheduled; promote at the time "
                                   "instead, or drop --at")
        from ..lifecycle.schedule import schedule_promotion

        entry = schedule_promotion(settings.data_dir, name, version, to, at, actor=_actor(by),
                                   reason=reason, emergency_reason=emergency)
        _echo(entry, as_json, f"scheduled: promote {name} {version} to {to} at {entry['at']} "
                              f"(id {entry['id']})")
        return
    with open_registry(settings) as registry:
        result = promote(registry, settings, name, version, to, actor=_actor(by),
                         reason=reason, breaking=breaking, emergency_reason=emergency,
                         loader=load_check(registry, settings.load_timeout_s))
    demoted = f"; version {result['demoted']} deprecated" if result["demoted"] else ""
    _echo(result, as_json, f"{name} version {version}: {result['from']} -> {to}{demoted}")


@models.command("approve")
@click.argument("name")
@click.argument("version")
@click.option("--by", "by", required=True, help="Who approves (not the pusher).")
@click.option("--reason", required=True, help="Why it may go to production.")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def models_approve(ctx: click.Context, name: str, version: str, by: str, reason: str,
                   data_dir: Path | None, as_json: bool) -> None:
    """Approve version VERSION of model NAME for production (idempotent per approver)."""
    from ..lifecycle.gates import approve
    from ..registry.opener import open_registry

    settings = settings_from(ctx, data_dir=data_dir)
    with open_registry(settings) as registry:
        result = approve(registry, name, version, by, reason)
    who = ", ".join(a["approver"] for a in result["approvals"])
    _echo(result, as_json, f"{name} version {version} approved by {by} "
                           f"({len(result['approvals'])} approval(s): {who})")


@models.command("rollback")
@click.argument("name")
@click.option("--to", "to_version", default=None, metavar="VERSION",
              help="Version to restore (default: the production version before the current).")
@click.option("--reason", default="rollback", show_default=True, help="Why.")
@click.option("--force", "force", default=None, metavar="REASON",
              help="Roll back even though a consumer reads an output the target lacks.")
@click.option("--by", "by", default=None, help="Who rolls back (default: $USER).")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def models_rollback(ctx: click.Context, name: str, to_version: str | None, reason: str,
                    force: str | None, by: str | None, data_dir: Path | None,
                    as_json: bool) -> None:
    """Put an earlier production version of model NAME back into production."""
    from ..lifecycle.promotion import rollback
    from ..registry.opener import open_registry

    logging.basicConfig(level="WARNING")
    settings = settings_from(ctx, data_dir=data_dir)
    with open_registry(settings) as registry:
        result = rollback(registry, settings, name, to_version=to_version, actor=_actor(by),
                          reason=reason, force_reason=force,
                          loader=load_check(registry, settings.load_timeout_s))
    _echo(result, as_json, f"{name}: version {result['version']} is production again"
                           + (f"; version {result['demoted']} deprecated"
                              if result["demoted"] else ""))
