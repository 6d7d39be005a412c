"""Governance commands: consumers, lineage, legal holds, deletion, deprecation, retention.

    appliance consumers add NAME --model M --reads out1,out2 --contact C [--webhook URL]
    appliance consumers list [--model M]
    appliance consumers outbox [--status pending|delivered|failed]
    appliance models lineage|hold|release|delete|deprecate NAME VERSION ...
    appliance retention set (--model M | --tag k=v) [--keep-deprecated N]
                            [--delete-archived-after-days D]
    appliance retention apply
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from . import data_dir_option, handle_errors, json_option, main, settings_from
from . import echo_result as _echo
from .models import _open_registry, models

T = TypeVar("T")


def _with_registry(ctx: click.Context, data_dir: Path | None, fn: Callable[[Any], T]) -> T:
    with _open_registry(ctx, data_dir) as registry:
        return fn(registry)


@main.group()
def consumers() -> None:
    """Who reads which outputs of a model (deprecation notices go to them)."""


@consumers.command("add")
@click.argument("name")
@click.option("--model", required=True, help="The model it consumes.")
@click.option("--reads", required=True, help="Outputs it reads, comma-separated.")
@click.option("--contact", required=True, help="Who to tell (email, team).")
@click.option("--webhook", default=None,
              help="URL that gets deprecation notices (POST JSON); a loopback, private or "
                   "link-local one only if lifecycle.webhooks.allow names it.")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def consumers_add(ctx: click.Context, name: str, model: str, reads: str, contact: str,
                  webhook: str | None, data_dir: Path | None, as_json: bool) -> None:
    """Register NAME as a consumer of a model."""
    from ..lifecycle.consumers import add_consumer

    webhooks = settings_from(ctx, data_dir=data_dir).lifecycle.webhooks
    c = _with_registry(ctx, data_dir, lambda r: add_consumer(
        r, name, model, reads.split(","), contact, webhook, webhooks=webhooks))
    _echo(c.to_dict(), as_json, f"{c.name} consumes {c.model} ({', '.join(c.reads)}); "
                                f"contact {c.contact}")


@consumers.command("list")
@click.option("--model", default=None, help="Only this model's consumers.")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def consumers_list(ctx: click.Context, model: str | None, data_dir: Path | None,
                   as_json: bool) -> None:
    """List consumers."""
    from ..lifecycle.consumers import list_consumers

    found = _with_registry(ctx, data_dir, lambda r: list_consumers(r, model))
    lines = [f"{c.model:<20} {c.name:<20} reads {', '.join(c.reads)}; contact {c.contact}"
             + (f"; webhook {c.webhook}" if c.webhook else "") for c in found]
    _echo([c.to_dict() for c in found], as_json, "\n".join(lines) or "no consumers")


@consumers.command("outbox")
@click.option("--status", type=click.Choice(["pending", "delivered", "failed"]), default=None,
              help="Only rows in this state.")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def consumers_outbox(ctx: click.Context, status: str | None, data_dir: Path | None,
                     as_json: bool) -> None:
    """Webhook deliveries: pending, delivered, or failed with the reason."""
    from ..lifecycle.webhooks import outbox

    rows = _with_registry(ctx, data_dir, lambda r: outbox(r.db, status))
    lines = [f"#{o['id']:<5} {o['status']:<9} {o['consumer']:<16} {o['url']} "
             f"({o['attempts']} attempt(s))" + (f": {o['last_error']}" if o["last_error"]
                                               else "") for o in rows]
    _echo(rows, as_json, "\n".join(lines) or "no webhook deliveries")


@models.command("lineage")
@click.argument("name")
@click.argument("version")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def models_lineage(ctx: click.Context, name: str, version: str, data_dir: Path | None,
                   as_json: bool) -> None:
    """Where a version came from (training job, parents) and where and when it served."""
    from ..lifecycle.lineage import format_lineage, lineage

    tree = _with_registry(ctx, data_dir, lambda r: lineage(r, name, version))
    _echo(tree, as_json, format_lineage(tree))


@models.command("hold")
@click.argument("name")
@click.argument("version")
@click.option("--by", "by", required=True, help="Who places the hold.")
@click.option("--holder", default=None,
              help="On whose behalf it is kept (e.g. legal-dept; default: --by).")
@click.option("--reason", required=True, help="Why (case or ticket).")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def models_hold(ctx: click.Context, name: str, version: str, by: str, holder: str | None,
                reason: str, data_dir: Path | None, as_json: bool) -> None:
    """Place a legal hold: the version cannot be deleted until it is released."""
    from ..lifecycle.holds import place_hold

    hold = _with_registry(ctx, data_dir, lambda r: place_hold(
        r, name, version, holder or by, reason, placed_by=by))
    _echo(hold.to_dict(), as_json, f"{name} version {version} {hold.describe()}")


@models.command("release")
@click.argument("name")
@click.argument("version")
@click.option("--by", "released_by", required=True, help="Who releases the hold(s).")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def models_release(ctx: click.Context, name: str, version: str, released_by: str,
                   data_dir: Path | None, as_json: bool) -> None:
    """Release the legal holds on a version."""
    from ..lifecycle.holds import release_hold

    holds = _with_registry(ctx, data_dir, lambda r: release_hold(r, name, version, released_by))
    _echo([h.to_dict() for h in holds], as_json,
          "\n".join(f"released hold by {h.holder} ({h.reason!r}) on {name} version {version}"
                    for h in holds))


@models.command("delete")
@click.argument("name")
@click.argument("version")
@click.option("--by", "actor", required=True, help="Who deletes it.")
@click.option("--reason", required=True, help="Why.")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def models_delete(ctx: click.Context, name: str, version: str, actor: str, reason: str,
                  data_dir: Path | None, as_json: bool) -> None:
    """Delete an archived, failed or registered version (refused while held)."""
    from ..lifecycle.deletion import delete_version

    d = _with_registry(ctx, data_dir,
                       lambda r: delete_version(r, name, version, actor=actor, reason=reason))
    freed = (f"; removed artifacts {', '.join(x[:12] for x in d.artifacts_removed)}"
             if d.artifacts_removed else "; artifacts kept (shared with other versions)")
    _echo(d.to_dict(), as_json, f"deleted {name} version {version} (was {d.stage}){freed}")


@models.command("deprecate")
@click.argument("name")
@click.argument("version")
@click.option("--on", "on", required=True, help="Deprecation date (ISO 8601).")
@click.option("--sunset", default=None, help="Date it stops serving (ISO 8601).")
@click.option("--successor", default=None, help="The version consumers should move to.")
@click.option("--by", "actor", default=None, help="Who deprecates it (default: $USER).")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def models_deprecate(ctx: click.Context, name: str, version: str, on: str,
                     sunset: str | None, successor: str | None, actor: str | None,
                     data_dir: Path | None, as_json: bool) -> None:
    """Announce a version's deprecation and queue the consumers' webhook notices (the
    serving process delivers them, with retries)."""
    from ..lifecycle.deprecation import deprecate

    by = actor or os.environ.get("USER") or "cli"
    result = _with_registry(ctx, data_dir, lambda r: deprecate(
        r, name, version, deprecation_date=on, sunset_date=sunset, successor=successor,
        actor=by))
    lines = [result["message"]] + [
        f"  {n['consumer']}: " + (f"webhook queued (outbox #{n['outbox_id']}; the server "
                                  "delivers it)" if n["outbox_id"] else
                                  f"no webhook: contact {n['contact']}")
        for n in result["notices"]]
    _echo(result, as_json, "\n".join(lines))


@main.group()
def retention() -> None:
    """Retention policies: deprecated versions kept, archived versions deleted."""


@retention.command("set")
@click.option("--model", default=None, help="Policy for this model.")
@click.option("--tag", default=None, help="Policy for models tagged key=value.")
@click.option("--keep-deprecated", type=click.IntRange(min=0), default=None,
              help="Keep the last N deprecated versions; older ones are archived.")
@click.option("--delete-archived-after-days", type=click.IntRange(min=0), default=None,
              help="Delete versions archived more than D days ago (unless held).")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def retention_set(ctx: click.Context, model: str | None, tag: str | None,
                  keep_deprecated: int | None, delete_archived_after_days: int | None,
                  data_dir: Path | None, as_json: bool) -> None:
    """Create or update a retention policy."""
    from ..lifecycle.retention import set_policy

    if (model is None) == (tag is None):
        raise click.UsageError("give exactly one of --model M or --tag key=value")
    scope, target = ("model", model) if model else ("tag", tag or "")
    p = _with_registry(ctx, data_dir, lambda r: set_policy(
        r, scope, target, keep_deprecated, delete_archived_after_days))
    keep = ("keep all deprecated" if p.keep_deprecated is None
            else f"keep {p.keep_deprecated} deprecated")
    days = ("never delete archived" if p.delete_archived_after_days is None
            else f"delete archived after {p.delete_archived_after_days} day(s)")
    _echo(p.to_dict(), as_json, f"retention for {p.scope} {p.target}: {keep}, {days}")


@retention.command("apply")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def retention_apply(ctx: click.Context, data_dir: Path | None, as_json: bool) -> None:
    """Apply the retention policies now."""
    from ..lifecycle.retention import apply_retention

    actions = _with_registry(ctx, data_dir, lambda r: apply_retention(r))
    _echo(actions, as_json, "\n".join(f"{a['action']:<8} {a['model']} version {a['version']}: "
                                      f"{a['reason']}" for a in actions) or "nothing to do")
