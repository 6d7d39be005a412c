"""Business KPIs beside the model: do prediction shifts move with them?

``POST /v1/kpis`` stores points ``{"name", "time" (ISO 8601 with a timezone), "value"}``;
one bad point refuses the whole batch with a 400 naming its index and field.

:func:`kpi_report` lines the model's evaluated windows up with the KPI: the KPI of a
window is the mean of its points inside ``[start, end)``; the shift of a window is the
PSI of its prediction distribution against the reference. For each lag ``L`` in
``0..max_lag`` (in windows: the KPI ``L`` windows after the shift) it computes
Spearman's rank correlation with its p-value (``scipy.stats.spearmanr``) over the
windows where both are known. The lag with the smallest p-value is reported; the
correlation counts as found when that p-value, Bonferroni-corrected for the lags tried,
is below ``alpha``. When it is, the shifts that co-moved are the windows whose prediction
PSI is at least the warning threshold and whose lagged KPI lies 2 robust standard deviations
(1.4826 x MAD) or more from the median KPI of the unshifted windows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
from scipy import stats

from ..errors import BadRequest
from .store import DriftStore

MIN_PAIRS = 5


def parse_time(value: str, where: str) -> float:
    """Seconds since the epoch of an ISO 8601 time that has a timezone."""
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise BadRequest(f"{where}: {value!r} is not an ISO 8601 time; send e.g. "
                         "2025-01-31T12:00:00Z") from None
    if parsed.tzinfo is None:
        raise BadRequest(f"{where}: {value!r} has no timezone; add Z or an offset "
                         "such as +01:00")
    return parsed.timestamp()


def parse_points(points: Sequence[tuple[Any, Any, Any]]) -> list[tuple[str, float, float]]:
    """(name, time, value) triples checked and converted; BadRequest naming the index."""
    out = []
    for i, (name, time, value) in enumerate(points):
        if not name.strip():
            raise BadRequest(f"point {i}: name must not be blank")
        when = parse_time(time, f"point {i}: time")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BadRequest(f"point {i}: value must be a number, got {value!r}")
        if not math.isfinite(value):
            raise BadRequest(f"point {i}: value must be finite, got {value!r}")
        out.append((name, when, float(value)))
    return out


def _window_kpis(store: DriftStore, kpi: str, windows: list[dict[str, Any]]) -> list[float]:
    means = []
    for w in windows:
        points = store.kpi_points(kpi, w["window"]["start"], w["window"]["end"])
        means.append(float(np.mean([v for _, v in points])) if points else math.nan)
    return means


def _lagged(psi: list[float], kpi: list[float], lag: int) -> tuple[list[int], list[float],
                                                                  list[float]]:
    idx, xs, ys = [], [], []
    for t in range(len(psi) - lag):
        if math.isfinite(psi[t]) and math.isfinite(kpi[t + lag]):
            idx.append(t)
            xs.append(psi[t])
            ys.append(kpi[t + lag])
    return idx, xs, ys


def kpi_report(store: DriftStore, model: str, kpi: str, *, max_lag: int = 3,
               windows: int = 500, alpha: float = 0.05) -> dict[str, Any]:
    """The correlation of prediction shift with ``kpi`` (see the module docstring)."""
    results = [r for r in store.results(model, limit=windows)
               if r.get("prediction", {}).get("tested")]
    psi = [float(r["prediction"]["psi"]) for r in results]
    values = _window_kpis(store, kpi, results)
    report: dict[str, Any] = {"model": model, "kpi": kpi, "windows": len(results),
                              "windows_with_kpi": sum(math.isfinite(v) for v in values),
                              "lags": [], "correlated": False, "best": None, "co_moved": []}
    for lag in range(max_lag + 1):
        _, xs, ys = _lagged(psi, values, lag)
        if len(xs) < MIN_PAIRS or len(set(xs)) < 2 or len(set(ys)) < 2:
            report["lags"].append({"lag": lag, "pairs": len(xs), "rho": None,
                                   "p_value": None})
            continue
        rho, p = stats.spearmanr(xs, ys)
        report["lags"].append({"lag": lag, "pairs": len(xs), "rho": float(rho),
                               "p_value": float(p)})
    tested = [x for x in report["lags"] if x["p_value"] is not None]
    if not tested:
        report["summary"] = (f"too few windows with both a tested prediction and {kpi!r} "
                             f"points (need {MIN_PAIRS} per lag)")
        return report
    best = min(tested, key=lambda x: (x["p_value"], x["lag"]))
    adjusted = min(1.0, best["p_value"] * len(tested))
    report["best"] = {**best, "p_adjusted": adjusted}
    report["correlated"] = adjusted < alpha
    if report["correlated"]:  # without a correlation, a co-move is a coincidence
        report["co_moved"] = _co_moved(results, psi, values, best["lag"])
    report["summary"] = (
        f"prediction shift and {kpi!r} move together at lag {best['lag']} window(s) "
        f"(Spearman rho {best['rho']:.2f}, p {adjusted:.2g} after correcting for "
        f"{len(tested)} lags)" if report["correlated"] else
        f"no correlation between prediction shift and {kpi!r} found (best lag "
        f"{best['lag']}: rho {best['rho']:.2f}, corrected p {adjusted:.2g})")
    return report


def _co_moved(results: list[dict[str, Any]], psi: list[float], kpi: list[float],
              lag: int) -> list[dict[str, Any]]:
    idx, xs, ys = _lagged(psi, kpi, lag)
    warning = [float(results[t]["settings"]["psi_warning"]) for t in idx]
    calm = [y for x, y, w in zip(xs, ys, warning, strict=True) if x < w]
    if len(calm) < 3:
        return []
    median = float(np.median(calm))
    spread = 1.4826 * float(np.median(np.abs(np.array(calm) - median))) or 1e-12
    out = []
    for t, x, y, w in zip(idx, xs, ys, warning, strict=True):
        z = (y - median) / spread
        if x >= w and abs(z) >= 2:
            window = results[t]["window"]
            out.append({"window_start": window["start"], "window_end": window["end"],
                        "psi": x, "kpi": y, "kpi_change": y - median, "z": z})
    return out
