"""`appliance models promote-at | schedule | schedule-cancel`: scheduled promotions.

Jobs are stored in the registry database; the serving process (``appliance serve``) runs
them at their time, or as soon as it is back up if the box was off then.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from ..lifecycle.stages import STAGES
from . import data_dir_option, handle_errors, json_option, settings_from
from .models import models


def _data_dir(ctx: click.Context, data_dir: Path | None) -> Path:
    return settings_from(ctx, data_dir=data_dir).data_dir


def iso_time(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime | None:
    """A click callback: an ISO 8601 time option as an aware UTC datetime (no offset
    given: UTC); a usage error (exit 2) when it is not one."""
    if value is None:
        return None
    from ..registry.db import parse_time

    try:
        return parse_time(value).astimezone(UTC)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time; write e.g. "
                                 "2026-03-01T02:00:00Z or 2026-03-01T03:00+01:00") from None


def _line(entry: dict[str, Any]) -> str:
    reason = f"  ({entry['reason']})" if entry["reason"] else ""
    return (f"{entry['at']}  {entry['model']} {entry['version']} -> {entry['to']}  "
            f"by {entry['actor']}{reason}\n    id: {entry['id']}")


@models.command("promote-at")
@click.argument("name")
@click.argument("version")
@click.option("--to", "to", required=True, type=click.Choice(STAGES), help="Target stage.")
@click.option("--at", "at", required=True, callback=iso_time, metavar="TIME",
              help="When, ISO 8601 (e.g. 2026-03-01T02:00:00Z); a time without an offset "
                   "is UTC. Must be in the future.")
@click.option("--by", "actor", default=None, help="Who schedules it (default: $USER).")
@click.option("--reason", default="", help="Why; recorded with the promotion.")
@click.option("--emergency", "emergency_reason", default=None, metavar="REASON",
              help="Override a freeze window at that time, giving the reason.")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def models_promote_at(ctx: click.Context, name: str, version: str, to: str, at: datetime,
                      actor: str | None, reason: str, emergency_reason: str | None,
                      data_dir: Path | None, as_json: bool) -> None:
    """Schedule promoting NAME VERSION to a stage at a given time.

    Gates (legal transition, approvals, freeze windows) are checked when it runs; a
    refusal then is recorded in the registry events as scheduled-promotion-failed.
    """
    from ..lifecycle.schedule import schedule_promotion

    entry = schedule_promotion(_data_dir(ctx, data_dir), name, version, to, at,
                               actor=actor or os.environ.get("USER") or "cli",
                               reason=reason, emergency_reason=emergency_reason)
    if as_json:
        click.echo(json.dumps(entry, indent=2))
    else:
        click.echo(f"scheduled: promote {name} {version} to {to} at {entry['at']}\n"
                   f"    id: {entry['id']}  (cancel: appliance models schedule-cancel ID)")


@models.command("schedule")
@click.option("--ics", "ics", type=click.Path(path_type=Path, dir_okay=False), default=None,
              metavar="FILE", help="Also write the calendar as iCalendar (.ics) to FILE.")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def models_schedule(ctx: click.Context, ics: Path | None, data_dir: Path | None,
                    as_json: bool) -> None:
    """List the release calendar: scheduled promotions not yet run, soonest first."""
    from ..lifecycle.schedule import list_schedule, to_ics

    entries = list_schedule(_data_dir(ctx, data_dir))
    if ics is not None:
        ics.write_bytes(to_ics(entries).encode("utf-8"))
    if as_json:
        click.echo(json.dumps(entries, indent=2))
        return
    if not entries:
        click.echo("no promotions scheduled (add one with: appliance models promote-at "
                   "NAME VERSION --to STAGE --at TIME)")
    for entry in entries:
        click.echo(_line(entry))
    if ics is not None:
        click.echo(f"wrote {len(entries)} event(s) to {ics}")


@models.command("schedule-cancel")
@click.argument("job_id")
@click.option("--by", "actor", default=None, help="Who cancels it (default: $USER).")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def models_schedule_cancel(ctx: click.Context, job_id: str, actor: str | None,
                           data_dir: Path | None, as_json: bool) -> None:
    """Cancel the scheduled promotion JOB_ID (see: appliance models schedule)."""
    from ..lifecycle.schedule import cancel_scheduled

    entry = cancel_scheduled(_data_dir(ctx, data_dir), job_id,
                             actor=actor or os.environ.get("USER") or "cli")
    if as_json:
        click.echo(json.dumps({"cancelled": entry}, indent=2))
    else:
        click.echo(f"cancelled: promote {entry['model']} {entry['version']} to "
                   f"{entry['to']} at {entry['at']}")
