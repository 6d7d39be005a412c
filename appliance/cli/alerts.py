"""Alert commands, on the data directory's ``alerts.db`` (the server sees the changes at
its next tick):

    appliance alerts list [--state firing|resolved] [--severity S] [--model M] [--json]
    appliance alerts ack ID [--comment TEXT] [--by NAME]
    appliance alerts silence MATCHER... --duration 2h --comment TEXT [--by NAME]
    appliance alerts silence --expire ID [--by NAME]
    appliance alerts silences [--state active|pending|expired]

A matcher is ``name=value``, ``name!=value``, ``name=~regex`` or ``name!~regex``.
Silences created or expired here are appended to the audit log like the API's.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import click

from ..alerts.engine import AlertEngine
from ..errors import BadRequest
from . import data_dir_option, echo_result, handle_errors, json_option, main, settings_from

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``2h``, ``1d``, ``1w`` as seconds; BadRequest otherwise."""
    found = _DURATION.match(text)
    if not found or float(found.group(1)) <= 0:
        raise BadRequest(f"duration {text!r} is not understood: write e.g. 90s, 15m, 2h or 1d")
    return float(found.group(1)) * _UNITS[found.group(2)]


def _by(by: str | None) -> str:
    return by or os.environ.get("USER") or "cli"


@contextlib.contextmanager
def _engine(ctx: click.Context, data_dir: Path | None) -> Iterator[AlertEngine]:
    from ..audit.keys import open_log, plugin_provider

    settings = settings_from(ctx, data_dir=data_dir)
    audit = open_log(settings.data_dir, plugin_provider(settings.data_dir))
    engine = AlertEngine(settings.data_dir, settings.alerts, audit=audit, sinks={})
    try:
        yield engine
    finally:
        engine.close()
        audit.close()


@main.group()
def alerts() -> None:
    """Alerts: list, acknowledge, silence (docs/alerts.md)."""


@alerts.command("list")
@click.option("--state", type=click.Choice(["firing", "resolved"]), default=None)
@click.option("--severity", type=click.Choice(["info", "warning", "critical"]), default=None)
@click.option("--model", default=None, help="Only this model's alerts.")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def alerts_list(ctx: click.Context, state: str | None, severity: str | None,
                model: str | None, data_dir: Path | None, as_json: bool) -> None:
    """List alerts (firing, and resolved ones still kept)."""
    with _engine(ctx, data_dir) as engine:
        found = engine.list_alerts(state=state, severity=severity, model=model)
    lines = []
    for a in found:
        held = (" silenced" if a["silenced_by"] else "") + (
            " inhibited" if a["inhibited_by"] else "")
        acked = f" acked by {a['acked_by']}" if a["acked_by"] else ""
        lines.append(f"{a['id']}  {a['state']:<8} {a['severity']:<8} {a['name']:<18} "
                     f"{a['labels'].get('model', '-'):<16} since {a['starts_at']}"
                     f"{acked}{held}")
    echo_result(found, as_json, "\n".join(lines) or "no alerts")


@alerts.command("ack")
@click.argument("alert_id")
@click.option("--comment", default="", help="What is being done about it.")
@click.option("--by", default=None, help="Who acknowledges (default: $USER).")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def alerts_ack(ctx: click.Context, alert_id: str, comment: str, by: str | None,
               data_dir: Path | None, as_json: bool) -> None:
    """Acknowledge alert ALERT_ID: its escalation stops."""
    with _engine(ctx, data_dir) as engine:
        alert = engine.ack(alert_id, _by(by), comment)
    echo_result(alert, as_json, f"{alert['id']} ({alert['name']}) acknowledged by "
                                f"{alert['acked_by']}")


@alerts.command("silence")
@click.argument("matchers", nargs=-1)
@click.option("--duration", default=None, help="How long, e.g. 2h (from now).")
@click.option("--comment", default=None, help="Why (required to create one).")
@click.option("--expire", "expire_id", default=None, metavar="ID",
              help="Expire silence ID now instead of creating one.")
@click.option("--by", default=None, help="Who silences (default: $USER).")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def alerts_silence(ctx: click.Context, matchers: tuple[str, ...], duration: str | None,
                   comment: str | None, expire_id: str | None, by: str | None,
                   data_dir: Path | None, as_json: bool) -> None:
    """Silence the alerts matching every MATCHER (e.g. model=fraud alertname=~"Drift.*")."""
    with _engine(ctx, data_dir) as engine:
        if expire_id is not None:
            if matchers or duration:
                raise BadRequest("--expire ID takes no matchers or --duration")
            silence = engine.expire_silence(expire_id, _by(by))
            shown = silence.to_dict(engine.clock())
            echo_result(shown, as_json, f"silence {silence.id} expired")
            return
        if not matchers:
            raise BadRequest('give at least one matcher, e.g. model="fraud"')
        if duration is None:
            raise BadRequest("give --duration, e.g. --duration 2h")
        silence = engine.create_silence(list(matchers), created_by=_by(by),
                                        comment=comment or "",
                                        duration_s=parse_duration(duration))
        shown = silence.to_dict(engine.clock())
    echo_result(shown, as_json, f"silence {silence.id} until {shown['ends_at']}: "
                                + " ".join(str(m) for m in silence.matchers))


@alerts.command("silences")
@click.option("--state", type=click.Choice(["active", "pending", "expired"]), default=None)
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def alerts_silences(ctx: click.Context, state: str | None, data_dir: Path | None,
                    as_json: bool) -> None:
    """List silences."""
    with _engine(ctx, data_dir) as engine:
        found = engine.list_silences(state)
    lines = [f"{s['id']}  {s['state']:<8} until {s['ends_at']}  by {s['created_by']}: "
             + " ".join(f"{m['name']}{m['op']}\"{m['value']}\"" for m in s["matchers"])
             + f"  ({s['comment']})" for s in found]
    echo_result(found, as_json, "\n".join(lines) or "no silences")
