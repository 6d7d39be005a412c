"""`appliance sync enroll | run | status | import-bundle`: this box and its fleet hub.

    appliance sync enroll https://hub.example:8700 TOKEN   # once, with a one-time token
    appliance sync run                                     # one cycle now, step by step
    appliance sync status                                  # device, hub, staleness, outbox
    appliance sync import-bundle /media/usb/fleet          # an air-gapped site

``run`` and ``import-bundle`` install and promote in this process with the same load
check as ``appliance models promote``; a running server switches to what they promoted
within ``registry_poll_s``. The server runs the same cycle on its own schedule
(``[sync] interval_s``) once the box is enrolled.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import click

from . import data_dir_option, echo_result, handle_errors, json_option, main, settings_from


@main.group()
def sync() -> None:
    """Fleet sync with a hub: enrolment, cycles, status, air-gapped bundles."""


def _progress(as_json: bool) -> Any:
    def line(text: str) -> None:
        if not as_json:
            click.echo(f"  {text}", err=True)
    return line


def _cycle_text(result: dict[str, Any]) -> str:
    lines = [f"sync {result['status']}"
             + (f": {result['error']}" if result.get("error") else "")]
    for item in result.get("installed", []):
        lines.append(f"  installed {item['model']} version {item['version']}")
    for item in result.get("promoted", []):
        demoted = f" (version {item['demoted']} deprecated)" if item.get("demoted") else ""
        lines.append(f"  promoted {item['model']} version {item['version']}: "
                     f"{item['from']} -> {item['to']}{demoted}")
    for item in result.get("failed", []):
        lines.append(f"  FAILED {item['model']} {item['version']}: {item['reason']}")
    upload = result.get("upload")
    if upload:
        lines.append(f"  reports: {upload['sent']} sent, acknowledged through "
                     f"{upload['acked']}" + (f"; {upload['error']}" if upload["error"] else ""))
    if result.get("stale_since"):
        lines.append("  stale: serving the versions verified last")
    return "\n".join(lines)


@sync.command("enroll")
@click.argument("hub_url")
@click.argument("token")
@click.option("--force", is_flag=True, help="Enrol again (a new device key and report "
              "sequence; stop the server first).")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def sync_enroll(ctx: click.Context, hub_url: str, token: str, force: bool,
                data_dir: Path | None, as_json: bool) -> None:
    """Enrol this box with the hub at HUB_URL using the one-time TOKEN."""
    from ..sync.enroll import enroll

    logging.basicConfig(level="WARNING")
    settings = settings_from(ctx, data_dir=data_dir)
    enrollment = enroll(settings, hub_url, token, force=force)
    echo_result(enrollment.to_dict(), as_json,
                f"enrolled as device {enrollment.device_id} in group {enrollment.group} "
                f"(hub {enrollment.hub_url}, metadata {enrollment.metadata_url})")


@sync.command("run")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def sync_run(ctx: click.Context, data_dir: Path | None, as_json: bool) -> None:
    """Run one sync cycle now: refresh, install, promote, report."""
    from ..registry.opener import open_registry
    from ..sync.box import box_of_cli
    from ..sync.cycle import run_cycle

    logging.basicConfig(level="WARNING")
    settings = settings_from(ctx, data_dir=data_dir)
    with open_registry(settings) as registry:
        result = run_cycle(box_of_cli(settings, registry, _progress(as_json))).to_dict()
    echo_result(result, as_json, _cycle_text(result))
    if result["status"] in ("refused", "error"):
        ctx.exit(1)


@sync.command("import-bundle")
@click.argument("directory", type=click.Path(path_type=Path))
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def sync_import_bundle(ctx: click.Context, directory: Path, data_dir: Path | None,
                       as_json: bool) -> None:
    """Verify the bundle in DIRECTORY (from `appliance hub export-bundle`) and apply it."""
    from ..registry.opener import open_registry
    from ..sync.box import box_of_cli
    from ..sync.bundle import import_bundle

    logging.basicConfig(level="WARNING")
    settings = settings_from(ctx, data_dir=data_dir)
    with open_registry(settings) as registry:
        result = import_bundle(box_of_cli(settings, registry, _progress(as_json)),
                               directory).to_dict()
    echo_result(result, as_json, _cycle_text(result))
    if result["status"] != "ok":
        ctx.exit(1)


@sync.command("status")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def sync_status(ctx: click.Context, data_dir: Path | None, as_json: bool) -> None:
    """Device id, hub, last sync, stale since, outbox depth and gaps."""
    from ..sync.status import sync_status as status_of

    settings = settings_from(ctx, data_dir=data_dir)
    status = status_of(settings)
    if as_json:
        click.echo(json.dumps(status, indent=2))
        return
    if not status["enrolled"]:
        click.echo("not enrolled: run `appliance sync enroll HUB_URL TOKEN`")
        return
    outbox = status["outbox"] or {}
    click.echo("\n".join([
        f"device {status['device_id']} in group {status['group']}, hub {status['hub_url']}",
        f"last attempt {status['last_attempt_at'] or 'never'} "
        f"({status['last_status'] or '-'}), last success {status['last_success_at'] or 'never'}",
        f"stale since {status['stale_since']}: {status['last_error']}"
        if status["stale_since"] else "not stale",
        *([f"refused: {status['last_refusal']}"] if status["last_refusal"] else []),
        f"outbox: {outbox.get('depth', 0)} report(s) waiting, {outbox.get('bytes', 0)} bytes, "
        f"acknowledged through {outbox.get('acked', 0)}, {outbox.get('pending_gaps', 0)} gap "
        f"record(s) waiting ({outbox.get('dropped_total', 0)} report(s) dropped in all)"]))
