"""`appliance drift status | history | kpi-report MODEL`: read drift results offline.

Everything is read from ``<data_dir>/drift.db`` (docs/drift.md), so the commands work
with or without a running server; the live sampling state is the server's
``GET /v1/drift/{model}``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from . import data_dir_option, echo_result, handle_errors, json_option, main, settings_from


def _store(ctx: click.Context, data_dir: Path | None) -> Any:
    from ..drift.store import DriftStore

    settings = settings_from(ctx, data_dir=data_dir)
    return DriftStore(settings.data_dir / "drift.db")


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def _line(result: dict[str, Any]) -> str:
    window = result["window"]
    text = (f"{_when(window['start'])} .. {_when(window['end'])}  {result['status']:<17} "
            f"{window['sampled']} sampled of {window['seen']}")
    if result.get("drifted"):
        text += "  drifted: " + ", ".join(result["drifted"][:8])
    prediction = result.get("prediction", {})
    if prediction.get("tested"):
        text += f"  prediction psi {prediction['psi']:.3f}"
    accuracy = result.get("accuracy", {})
    if accuracy.get("estimated") is not None:
        text += f"  est. accuracy {accuracy['estimated']:.3f}"
    if accuracy.get("realised") is not None:
        text += f" (realised {accuracy['realised']:.3f}, {accuracy['labelled_rows']} labels)"
    return text


@main.group()
def drift() -> None:
    """Drift detection results, history and KPI correlation (docs/drift.md)."""


@drift.command("status")
@click.argument("model")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def drift_status(ctx: click.Context, model: str, data_dir: Path | None,
                 as_json: bool) -> None:
    """The latest evaluated window of MODEL, with its per-feature KS and PSI."""
    from ..drift.status import offline_status

    report = offline_status(_store(ctx, data_dir), model)
    lines = [f"{model}: {report['status']}"]
    latest = report["latest"]
    if latest is not None:
        lines.append("  " + _line(latest))
        for name, stats in sorted(latest["features"].items(),
                                  key=lambda kv: kv[1]["p_adjusted"])[:10]:
            lines.append(f"  {name:<16} ks {stats['ks']:.3f}  p_adj {stats['p_adjusted']:.2g}"
                         f"  psi {stats['psi']:.3f}  {stats['severity']}")
    if report["reference"] is not None:
        ref = report["reference"]
        lines.append(f"  reference: {ref['rows']} rows ({ref['source']}), {ref['bins']} bins")
    echo_result(report, as_json, "\n".join(lines))


@drift.command("history")
@click.argument("model")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000),
              help="Newest windows shown.")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def drift_history(ctx: click.Context, model: str, limit: int, data_dir: Path | None,
                  as_json: bool) -> None:
    """Evaluated windows of MODEL, oldest first."""
    from ..drift.status import history, summary

    results = history(_store(ctx, data_dir), model, limit)
    echo_result([summary(r) for r in results], as_json,
                "\n".join(_line(r) for r in results) or f"{model}: no windows evaluated yet")


@drift.command("kpi-report")
@click.argument("model")
@click.option("--kpi", required=True, help="KPI name (as posted to /v1/kpis).")
@click.option("--max-lag", default=3, show_default=True, type=click.IntRange(0, 50),
              help="Largest lag tried, in windows (the KPI after the shift).")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def drift_kpi_report(ctx: click.Context, model: str, kpi: str, max_lag: int,
                     data_dir: Path | None, as_json: bool) -> None:
    """Correlate MODEL's prediction shift (PSI per window) with KPI --kpi."""
    from ..drift.kpi import kpi_report

    report = kpi_report(_store(ctx, data_dir), model, kpi, max_lag=max_lag)
    lines = [report["summary"]]
    for lag in report["lags"]:
        if lag["p_value"] is not None:
            lines.append(f"  lag {lag['lag']}: rho {lag['rho']:+.2f}  p {lag['p_value']:.2g}"
                         f"  ({lag['pairs']} windows)")
    for moved in report["co_moved"]:
        lines.append(f"  shift at {_when(moved['window_start'])}: psi {moved['psi']:.3f}, "
                     f"KPI {moved['kpi_change']:+.3g} from its median")
    echo_result(report, as_json, "\n".join(lines))
