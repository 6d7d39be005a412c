"""`appliance routes list | show | set | delete | shadow-report | replay`: model routes.

The commands read and write the registry directly (docs/routing.md), so they work with
or without a running server; a running server picks a change up within
``registry_poll_s``. ``set`` takes a whole route as JSON (``--body`` or ``--file``) or
builds the common ones from flags::

    appliance routes set fraud --weights 1=70,2=30
    appliance routes set fraud --canary 2 --steps 5,25,50,100 --interval 60
    appliance routes set fraud --shadow 2
    appliance routes set fraud --bandit 1,2,3 --reward binary
    appliance routes set fraud --weights 1=90,2=10 --sticky-header X-User-Id
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from . import data_dir_option, echo_result, handle_errors, json_option, main, settings_from


def _actor(by: str | None) -> str:
    return by or os.environ.get("USER") or "cli"


def _pairs(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        version, sep, weight = part.partition("=")
        if not sep:
            raise click.UsageError(f"--weights takes VERSION=PERCENT pairs, got {part!r}")
        try:
            out[version.strip()] = float(weight)
        except ValueError:
            raise click.UsageError(f"--weights: {weight!r} is not a number") from None
    return out


def _numbers(text: str, option: str) -> list[float]:
    try:
        return [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise click.UsageError(f"{option} takes comma-separated numbers, got {text!r}") from None


def _body(options: dict[str, Any]) -> dict[str, Any]:
    """The route the flags describe."""
    if options["body"] or options["file"]:
        text = options["body"] or Path(options["file"]).read_text()
        try:
            loaded = json.loads(text)
        except ValueError as exc:
            raise click.UsageError(f"the route is not JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise click.UsageError("the route must be a JSON object")
        return loaded
    body: dict[str, Any]
    if options["canary"]:
        body = {"policy": "canary", "candidate": options["canary"]}
        if options["steps"]:
            body["steps"] = _numbers(options["steps"], "--steps")
        if options["interval"] is not None:  # 0 is refused by the route check, not dropped
            body["interval_s"] = options["interval"]
    elif options["bandit"]:
        body = {"policy": "bandit", "arms": [a.strip() for a in options["bandit"].split(",")],
                "reward": options["reward"]}
    elif options["weights"]:
        body = {"policy": "sticky" if options["sticky_header"] else "weighted",
                "weights": _pairs(options["weights"])}
    elif options["shadow"]:
        body = {"policy": "shadow"}
    else:
        raise click.UsageError("say what the route is: --weights, --canary, --shadow, "
                               "--bandit, or the whole route with --body / --file")
    if options["shadow"]:
        body["shadows"] = list(options["shadow"])
    if options["sticky_header"]:
        body["sticky"] = {"header": options["sticky_header"]}
    if options["dry_run"]:
        body["dry_run"] = True
    return body


@main.group()
def routes() -> None:
    """Which version answers a model's requests (docs/routing.md)."""


@routes.command("list")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def routes_list(ctx: click.Context, data_dir: Path | None, as_json: bool) -> None:
    """Every stored route."""
    from ..registry.opener import open_registry
    from ..routing.operations import list_routes

    with open_registry(settings_from(ctx, data_dir=data_dir)) as registry:
        found = list_routes(registry)
    text = "\n".join(f"{r['model']:<24} {r['route']['policy']:<9} rev {r['revision']} "
                     f"{r['etag']}  by {r['updated_by']}" for r in found)
    echo_result(found, as_json, text or "no stored routes: every model uses the default route")


@routes.command("show")
@click.argument("model")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def routes_show(ctx: click.Context, model: str, data_dir: Path | None, as_json: bool) -> None:
    """MODEL's route, its ETag and its state."""
    from ..registry.opener import open_registry
    from ..routing.operations import describe

    with open_registry(settings_from(ctx, data_dir=data_dir)) as registry:
        found = describe(registry, model)
    echo_result(found, True, "")


@routes.command("set")
@click.argument("model")
@click.option("--body", default=None, help="The whole route as JSON.")
@click.option("--file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="The whole route from a JSON file.")
@click.option("--weights", default=None, metavar="V=P,...", help="A weighted split.")
@click.option("--canary", default=None, metavar="VERSION", help="A canary of VERSION.")
@click.option("--steps", default=None, metavar="P,...", help="Canary steps (percent).")
@click.option("--interval", default=None, type=float, help="Canary analysis interval, s.")
@click.option("--shadow", multiple=True, metavar="VERSION", help="A shadow version.")
@click.option("--bandit", default=None, metavar="V,...", help="A bandit over these arms.")
@click.option("--reward", default="binary", type=click.Choice(["binary", "continuous"]))
@click.option("--sticky-header", default=None, metavar="NAME",
              help="Keep each value of this header on one version.")
@click.option("--dry-run", is_flag=True, help="Decide and log only; change no traffic.")
@click.option("--if-match", default=None, metavar="ETAG",
              help="Refuse (412) unless the stored route still has this ETag.")
@click.option("--reason", default="", help="Why (kept in the event and the audit chain).")
@click.option("--by", "by", default=None, help="Who (default: $USER).")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def routes_set(ctx: click.Context, model: str, data_dir: Path | None, as_json: bool,
               if_match: str | None, reason: str, by: str | None, **options: Any) -> None:
    """Set MODEL's route."""
    from ..registry.opener import open_registry
    from ..routing.operations import put

    body = _body(options)
    with open_registry(settings_from(ctx, data_dir=data_dir)) as registry:
        stored = put(registry, model, body, actor=_actor(by), if_match=if_match,
                     reason=reason)
    echo_result(stored.to_dict(), as_json, f"{model}: {stored.spec.policy} route stored "
                                           f"(revision {stored.revision}, ETag {stored.etag})")


@routes.command("delete")
@click.argument("model")
@click.option("--if-match", default=None, metavar="ETAG")
@click.option("--reason", default="")
@click.option("--by", "by", default=None)
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def routes_delete(ctx: click.Context, model: str, if_match: str | None, reason: str,
                  by: str | None, data_dir: Path | None, as_json: bool) -> None:
    """Remove MODEL's route: it goes back to the default route."""
    from ..registry.opener import open_registry
    from ..routing.operations import remove

    with open_registry(settings_from(ctx, data_dir=data_dir)) as registry:
        removed = remove(registry, model, actor=_actor(by), if_match=if_match, reason=reason)
    echo_result(removed.to_dict(), as_json, f"{model}: route removed (default route now)")


@routes.command("shadow-report")
@click.argument("model")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def routes_shadow_report(ctx: click.Context, model: str, data_dir: Path | None,
                         as_json: bool) -> None:
    """How MODEL's shadow versions compare with the answers clients got (as the server
    last stored it: every 10 s)."""
    from ..registry.opener import open_registry
    from ..routing.reports import stored_shadow_report

    with open_registry(settings_from(ctx, data_dir=data_dir)) as registry:
        report = stored_shadow_report(registry, model)
    lines = [f"{model}: shadow report of {report['updated_at']}"]
    for version, body in report["shadows"].items():
        agreement = body.get("agreement")
        lines.append(f"  version {version}: {body.get('requests', 0)} requests, agreement "
                     f"{'n/a' if agreement is None else f'{agreement:.4f}'}, "
                     f"argmax {body.get('argmax_agreement')}, max |diff| "
                     f"{body.get('max_abs_diff')}, psi {body.get('psi')}, "
                     f"errors {sum((body.get('errors') or {}).values())}, "
                     f"shed {body.get('shed', 0)}")
    echo_result(report, as_json, "\n".join(lines))


@routes.command("replay")
@click.argument("model")
@click.argument("trace", type=click.Path(exists=True, dir_okay=False))
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def routes_replay(ctx: click.Context, model: str, trace: str, data_dir: Path | None,
                  as_json: bool) -> None:
    """Decide every request of TRACE (JSON lines: headers, subject, parameters) with
    MODEL's stored route as it starts, and print the decisions."""
    from ..registry.opener import open_registry
    from ..routing.replay import replay_trace

    settings = settings_from(ctx, data_dir=data_dir)
    with open_registry(settings) as registry:
        decisions = replay_trace(registry, model, Path(trace), settings)
    echo_result(decisions, as_json, "\n".join(
        f"{i}\t{d['version']}\t{d['label']}" for i, d in enumerate(decisions, 1)))


@main.group()
def experiments() -> None:
    """A/B experiments on weighted, sticky and bandit routes (docs/routing.md)."""


@experiments.command("report")
@click.argument("model")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def experiments_report(ctx: click.Context, model: str, data_dir: Path | None,
                       as_json: bool) -> None:
    """Per arm of MODEL's route: assignments, rewards, errors, the mean reward with its
    interval, and against the control a decision that stays valid however often you
    look (rewards as the server last committed them: every tick)."""
    from ..experiments.rewards import RewardStore
    from ..registry.opener import open_registry
    from ..routing.experiment import experiment_report

    settings = settings_from(ctx, data_dir=data_dir)
    with open_registry(settings) as registry, \
            RewardStore(settings.data_dir / "rewards.db") as rewards:
        report = experiment_report(registry, rewards, model)
    lines = [f"{model}: {report['policy']} experiment, control {report['control']}, "
             f"{report['test']} test at alpha {report['alpha']}"]
    for arm, body in report["arms"].items():
        mean = "n/a" if body["mean"] is None else f"{body['mean']:.4g}"
        interval = body["interval"]
        ci = "" if interval is None else f" [{interval[0]:.4g}, {interval[1]:.4g}]"
        lines.append(f"  arm {arm}: {body['assignments']} assigned, {body['rewards']} "
                     f"rewards, {body['errors']} errors, mean {mean}{ci}")
    for arm, result in report["comparisons"].items():
        lines.append(f"  {arm} vs {report['control']}: {result['message']}")
    echo_result(report, as_json, "\n".join(lines))
