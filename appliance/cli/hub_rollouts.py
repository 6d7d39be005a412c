"""`appliance hub rollout ...`: staged rollouts on the hub directory (see
``appliance/hub/rollouts.py``)::

    appliance hub rollout start scale 2 --group clinics --waves 1,5,25,100 \\
        --min-executed 10 --threshold-pct 10 --dir /srv/hub
    appliance hub rollout status r-1a2b3c4d5e6f
    appliance hub rollout pause|resume|stop|rollback|approve r-1a2b3c4d5e6f
    appliance hub rollout tick          # one controller step now (``hub serve`` runs it)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import msgspec

from ..errors import BadRequest
from . import echo_result, handle_errors, json_option
from .hub import _actor, _hub, by_option, dir_option, hub


@hub.group("rollout")
def hub_rollout() -> None:
    """Staged rollouts: waves that advance on success and halt themselves on failures."""


def _floats(text: str | None, what: str) -> list[float] | None:
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise BadRequest(f"{what}: comma-separated numbers, e.g. 1,5,25,100") from None


def _describe(r: dict[str, Any]) -> str:
    c = r["counts"]
    lines = [f"rollout {r['id']}: {r['model']} {r['version']} ({r['stage']}) to "
             f"{', '.join(r['groups'])} at {r['percent']:g}%: {r['status']}",
             f"  target {r['target']} boxes; taken in {c['members']}: {c['succeeded']} "
             f"succeeded, {c['failed']} failed, {c['pending']} pending"]
    for w in r["waves"]:
        mark = "started" if w["started"] else "waiting"
        lines.append(f"  wave {w['wave']}: {w['boxes']} boxes cumulative, {mark}; "
                     f"{w.get('succeeded', 0)} ok, {w.get('failed', 0)} failed, "
                     f"{w.get('pending', 0)} pending")
    if c["failed_by_type"]:
        lines.append("  failures by type: " + ", ".join(
            f"{k} {v}" for k, v in c["failed_by_type"].items()))
    reason = r.get("reason") or {}
    if r["status"] == "halted" and reason.get("kind") == "abort":
        lines.append(f"  halted: {reason['failures']} of {reason['executed']} finished boxes "
                     f"failed ({reason['failure_pct']}% >= threshold "
                     f"{reason['threshold_pct']}%, min_executed {reason['min_executed']})")
    if r["ignored_reports"]:
        lines.append(f"  reports ignored (box not in the rollout): {r['ignored_reports']}")
    return "\n".join(lines)


@hub_rollout.command("start")
@click.argument("model")
@click.argument("version")
@click.option("--group", "groups", multiple=True, required=True, help="Target group (repeat).")
@click.option("--stage", default="production", show_default=True)
@click.option("--percent", type=float, default=100.0, show_default=True,
              help="Share of the groups' boxes targeted.")
@click.option("--waves", default=None, help="Cumulative percentages, e.g. 1,5,25,100.")
@click.option("--exponential", default=None,
              help="BASE,FACTOR,MAX boxes per minute (instead of --waves).")
@click.option("--success-pct", type=float, default=90.0, show_default=True)
@click.option("--soak", "soak_s", type=float, default=None, help="Seconds a wave must run.")
@click.option("--min-executed", type=int, default=10, show_default=True)
@click.option("--threshold-pct", type=float, default=10.0, show_default=True)
@click.option("--failure-type", "failure_types", multiple=True,
              help="Failure types that count (default all).")
@click.option("--max-error-rate", type=float, default=0.05, show_default=True)
@click.option("--timeout", "timeout_s", type=int, default=3600, show_default=True)
@click.option("--approval", is_flag=True, help="Wait for another principal's approve.")
@dir_option
@by_option
@json_option
@handle_errors
def rollout_start(model: str, version: str, groups: tuple[str, ...], stage: str,
                  percent: float, waves: str | None, exponential: str | None,
                  success_pct: float, soak_s: float | None, min_executed: int,
                  threshold_pct: float, failure_types: tuple[str, ...],
                  max_error_rate: float, timeout_s: int, approval: bool,
                  hub_dir: Path | None, by: str | None, as_json: bool) -> None:
    """Roll MODEL VERSION out to the groups in waves."""
    from ..hub.rollout_spec import RolloutSpec
    from ..hub.rollouts import create

    abort: dict[str, Any] = {"min_executed": min_executed, "threshold_pct": threshold_pct,
                             "max_error_rate": max_error_rate}
    if failure_types:
        abort["failure_types"] = list(failure_types)
    doc: dict[str, Any] = {"model": model, "version": version, "groups": list(groups),
                           "stage": stage, "percent": percent, "waves": _floats(waves, "--waves"),
                           "success_pct": success_pct, "soak_s": soak_s, "abort": abort,
                           "timeout_s": timeout_s, "approval": approval}
    exp = _floats(exponential, "--exponential")
    if exp is not None:
        if len(exp) != 3:
            raise BadRequest("--exponential: BASE,FACTOR,MAX, e.g. 10,2,1000")
        doc["exponential"] = {"base_per_minute": int(exp[0]), "factor": exp[1],
                              "max_per_minute": int(exp[2])}
    try:
        spec = msgspec.convert(doc, RolloutSpec)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"the rollout: {exc}") from None
    with _hub(hub_dir) as h:
        result = create(h, spec, actor=_actor(by))
    echo_result(result, as_json, _describe(result))


@hub_rollout.command("status")
@click.argument("rollout_id")
@dir_option
@json_option
@handle_errors
def rollout_status(rollout_id: str, hub_dir: Path | None, as_json: bool) -> None:
    """Waves, counts, failures by type, and why it halted."""
    from ..hub.rollouts import status

    with _hub(hub_dir) as h:
        result = status(h, rollout_id)
    echo_result(result, as_json, _describe(result))


@hub_rollout.command("list")
@click.option("--model", default=None)
@dir_option
@json_option
@handle_errors
def rollout_list(model: str | None, hub_dir: Path | None, as_json: bool) -> None:
    """Every rollout, oldest first."""
    from ..hub.rollouts import list_rollouts

    with _hub(hub_dir) as h:
        found = list_rollouts(h, model)
    echo_result(found, as_json, "\n".join(
        f"{r['id']}  {r['model']} {r['version']}  {','.join(r['groups'])}  {r['status']}  "
        f"wave {r['wave']}" for r in found) or "no rollouts")


def _command(name: str, help_text: str) -> None:
    @hub_rollout.command(name, help=help_text)
    @click.argument("rollout_id")
    @dir_option
    @by_option
    @json_option
    @handle_errors
    def run(rollout_id: str, hub_dir: Path | None, by: str | None, as_json: bool) -> None:
        from ..hub import rollouts

        with _hub(hub_dir) as h:
            result = getattr(rollouts, name)(h, rollout_id, actor=_actor(by))
        echo_result(result, as_json, _describe(result))


for _name, _help in (("approve", "Approve a rollout waiting for approval (not its creator)."),
                     ("pause", "Stop advancing; boxes already told keep their version."),
                     ("resume", "Continue a paused or halted rollout."),
                     ("stop", "Emergency stop: every box not done is told its previous "
                              "version."),
                     ("rollback", "Tell every box of the rollout its previous version.")):
    _command(_name, _help)


@hub_rollout.command("tick")
@dir_option
@json_option
@handle_errors
def rollout_tick(hub_dir: Path | None, as_json: bool) -> None:
    """Run one rollout controller step now (``hub serve`` runs one every rollout_tick_s)."""
    from ..hub.rollout_controller import tick

    with _hub(hub_dir) as h:
        decided = tick(h)
    echo_result(decided, as_json, "\n".join(f"{k}: {v}" for k, v in decided.items())
                or "nothing to decide")
