"""Audit log commands.

    appliance audit verify [--witness FILE] [--json]  exit 1 naming the first bad seq
    appliance audit export [--since ISO] [--until ISO] [--format jsonl|cef|syslog] [-o FILE]
    appliance audit export --checkpoints [-o FILE]  the signed checkpoints, as a witness file
    appliance audit checkpoint                      sign the current head now
    appliance audit hold --by X --reason R          legal hold: no pruning until released
    appliance audit release --by X
    appliance audit prune --before DATE --by X --reason R
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from ..errors import BadRequest
from ..registry.db import parse_time
from . import data_dir_option, handle_errors, json_option, main, settings_from
from . import echo_result as _echo

T = TypeVar("T")


def _audit_settings(settings: Any) -> Any:
    from ..audit.settings import AuditSettings

    return getattr(settings, "audit", None) or AuditSettings()


def _with_log(ctx: click.Context, data_dir: Path | None, fn: Callable[[Any, Any], T]) -> T:
    """Run ``fn(log, audit_settings)`` on the data directory's log, signing with the key
    the ``appliance_box_key`` hook gives (as the server does); a log this command
    appended to is signed when it closes."""
    from ..audit.keys import open_log, plugin_provider

    settings = settings_from(ctx, data_dir=data_dir)
    log = open_log(settings.data_dir, plugin_provider(settings.data_dir))
    try:
        return fn(log, _audit_settings(settings))
    finally:
        log.close()


def _moment(option: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError:
        raise BadRequest(f"{option} {value!r} is not an ISO 8601 date or time, e.g. "
                         "2026-01-31 or 2026-01-31T12:00:00Z") from None


def _user() -> str:
    return os.environ.get("USER") or "cli"


@main.group()
def audit() -> None:
    """The tamper-evident audit log: verify, export, checkpoints, holds, pruning."""


@audit.command("verify")
@click.option("--witness", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              default=None, help="Checkpoints kept off the box (jsonl from `audit export "
              "--checkpoints`, or the SIEM's forwarded lines): the log must still match "
              "each one.")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def audit_verify(ctx: click.Context, witness: Path | None, data_dir: Path | None,
                 as_json: bool) -> None:
    """Check the hash chain, the chained signed checkpoints, the checkpoint cadence and
    (with --witness) the witnessed checkpoints; exit 1 when broken."""
    from ..audit.checkpoints import verify
    from ..audit.witness import read_witness

    witnessed = read_witness(witness) if witness is not None else []
    report = _with_log(ctx, data_dir, lambda log, s: verify(
        log, cadence_minutes=s.checkpoint_minutes, grace_minutes=s.checkpoint_grace_minutes,
        witness=witnessed))
    _echo(report.to_dict(), as_json, report.summary())
    if not report.ok:
        sys.exit(1)


@audit.command("export")
@click.option("--since", default=None, help="First moment included (ISO 8601, UTC if no zone).")
@click.option("--until", default=None, help="First moment excluded (ISO 8601).")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "cef", "syslog"]),
              default="jsonl", show_default=True)
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write here instead of standard output.")
@click.option("--by", default=None, help="Who exports (recorded). Default: $USER.")
@click.option("--checkpoints", "checkpoints", is_flag=True,
              help="Write the signed checkpoints (JSON lines: a witness file for `audit "
              "verify --witness`) instead of the records.")
@data_dir_option
@click.pass_context
@handle_errors
def audit_export(ctx: click.Context, since: str | None, until: str | None, fmt: str,
                 output: Path | None, by: str | None, checkpoints: bool,
                 data_dir: Path | None) -> None:
    """Write audit records as JSON lines, CEF or RFC 5424 syslog; the export is audited."""
    import json

    from ..audit.export import export
    from ..audit.witness import checkpoints_after

    start, end = _moment("--since", since), _moment("--until", until)

    def lines(log: Any) -> Any:
        if not checkpoints:
            return export(log, start, end, fmt)
        return (json.dumps(cp, sort_keys=True, separators=(",", ":"))
                for cp in checkpoints_after(log))

    def run(log: Any, _settings: Any) -> int:
        count = 0
        stream = output.open("w", encoding="utf-8") if output else sys.stdout
        try:
            for line in lines(log):
                stream.write(line + "\n")
                count += 1
        finally:
            if output:
                stream.close()
        log.append("audit.export", by or _user(), {
            "since": since, "until": until, "format": "checkpoints" if checkpoints else fmt,
            "records": count, "output": str(output) if output else "stdout"})
        return count

    count = _with_log(ctx, data_dir, run)
    if output:
        click.echo(f"exported {count} record(s) to {output}", err=True)


@audit.command("checkpoint")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def audit_checkpoint(ctx: click.Context, data_dir: Path | None, as_json: bool) -> None:
    """Sign the current head of the chain now."""
    from ..audit.signing import make_checkpoint

    cp = _with_log(ctx, data_dir, lambda log, _s: make_checkpoint(log))
    _echo(cp.to_dict(), as_json, f"checkpoint #{cp.id}: {cp.size} record(s), head "
                                 f"{cp.head_hash[:16]}…, signed at {cp.at}")


@audit.command("hold")
@click.option("--by", "holder", required=True, help="Who places the hold.")
@click.option("--reason", required=True, help="Why (case or ticket).")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def audit_hold(ctx: click.Context, holder: str, reason: str, data_dir: Path | None,
               as_json: bool) -> None:
    """Place a legal hold on the audit log: nothing is pruned until it is released."""
    from ..audit.retention import place_hold

    hold = _with_log(ctx, data_dir, lambda log, _s: place_hold(log, holder, reason))
    _echo(hold.to_dict(), as_json, f"audit log held by {hold.holder} since {hold.at}: "
                                   f"{hold.reason!r}")


@audit.command("release")
@click.option("--by", "released_by", required=True, help="Who releases the hold(s).")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def audit_release(ctx: click.Context, released_by: str, data_dir: Path | None,
                  as_json: bool) -> None:
    """Release every legal hold on the audit log."""
    from ..audit.retention import release_holds

    holds = _with_log(ctx, data_dir, lambda log, _s: release_holds(log, released_by))
    _echo([h.to_dict() for h in holds], as_json,
          "\n".join(f"released hold by {h.holder} ({h.reason!r})" for h in holds))


@audit.command("prune")
@click.option("--before", required=True, help="Remove records older than this (ISO 8601).")
@click.option("--by", required=True, help="Who prunes.")
@click.option("--reason", required=True, help="Why.")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def audit_prune(ctx: click.Context, before: str, by: str, reason: str, data_dir: Path | None,
                as_json: bool) -> None:
    """Remove old records behind a signed tombstone (refused inside the minimum retention,
    under a legal hold, or when the chain does not verify)."""
    from ..audit.retention import prune, retention_period

    moment = _moment("--before", before)
    assert moment is not None
    result = _with_log(ctx, data_dir, lambda log, s: prune(
        log, moment, by=by, reason=reason, min_retention=retention_period(s.retention_years)))
    _echo(result.to_dict(), as_json,
          f"pruned {result.records_pruned} record(s) through seq {result.pruned_through_seq} "
          f"(tombstone #{result.tombstone_id})")
