"""One window against the reference: per-feature KS and PSI, the correction, a verdict.

A pure function of its inputs (no clock, no randomness, no I/O), so the same window
gives the same result, bit for bit. The verdict of a window:

- ``insufficient_data``: fewer sampled rows than ``min_window``; no test is run, and
  this is never reported as drift.
- ``drift``: some feature's corrected KS p-value is below ``alpha``, or its PSI is at
  least its ``psi_critical``; or the same holds for the prediction (tested on its own,
  outside the feature family).
- ``warning``: no drift, but some PSI is at least its ``psi_warning``.
- ``no_drift`` otherwise.

A feature's ``severity`` is ``critical`` (PSI >= critical), ``warning`` (PSI >= warning,
or a significant KS with a smaller PSI) or ``ok``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .config import Effective
from .reference import Reference
from .sampler import Window
from .stats import FloatArray, adjust, bin_shares, ks_columns, psi

STATUSES = ("insufficient_data", "no_drift", "warning", "drift")


def _severity(value: float, significant: bool, warning: float, critical: float) -> str:
    if value >= critical:
        return "critical"
    return "warning" if value >= warning or significant else "ok"


def _prediction(reference: Reference, scores: FloatArray, eff: Effective) -> dict[str, Any]:
    scores = scores[np.isfinite(scores)]
    if not len(reference.prediction) or len(scores) < eff.min_window:
        return {"tested": False, "rows": int(len(scores))}
    d, p = ks_columns(reference.prediction[:, None], scores[:, None])
    value = psi(reference.prediction_shares, bin_shares(scores, reference.prediction_edges))
    significant = bool(p[0] < eff.alpha)
    return {"tested": True, "rows": int(len(scores)), "ks": float(d[0]),
            "p_value": float(p[0]), "psi": value,
            "drift": significant or value >= eff.psi_critical,
            "severity": _severity(value, significant, eff.psi_warning, eff.psi_critical)}


def evaluate_window(reference: Reference, window: Window, eff: Effective, *,
                    start: float, end: float, kind: str = "value") -> dict[str, Any]:
    """The result of one window (see the module docstring); JSON-ready."""
    reference = reference.rebinned(eff.bins)
    sampled = int(window.rows.shape[0])
    result: dict[str, Any] = {
        "window": {"start": start, "end": end, "seen": window.seen, "sampled": sampled,
                   "skipped": window.skipped},
        "settings": {"alpha": eff.alpha, "correction": eff.correction, "bins": eff.bins,
                     "min_window": eff.min_window, "psi_warning": eff.psi_warning,
                     "psi_critical": eff.psi_critical},
        "accuracy": _estimated_accuracy(window.prediction, kind),
    }
    if sampled < eff.min_window:
        return {**result, "status": "insufficient_data", "drift": False, "features": {},
                "drifted": [], "prediction": {"tested": False, "rows": sampled},
                "reason": f"{sampled} sampled rows, fewer than min_window={eff.min_window}"}
    keep = [j for j, f in enumerate(reference.features) if not eff.ignored(f)]
    d, p = ks_columns(reference.sample[:, keep], window.rows[:, keep])
    q = adjust(p, eff.correction)
    features: dict[str, dict[str, Any]] = {}
    for i, j in enumerate(keep):
        name = reference.features[j]
        warning, critical = eff.thresholds(name)
        value = psi(reference.shares[j], bin_shares(window.rows[:, j], reference.edges[j]))
        significant = bool(q[i] < eff.alpha)
        features[name] = {"ks": float(d[i]), "p_value": float(p[i]),
                          "p_adjusted": float(q[i]), "psi": value,
                          "drift": significant or value >= critical,
                          "severity": _severity(value, significant, warning, critical)}
    prediction = _prediction(reference, window.prediction, eff)
    drifted = [f for f, r in features.items() if r["drift"]]
    drift = bool(drifted) or bool(prediction.get("drift"))
    warned = any(r["severity"] != "ok" for r in features.values()) or (
        prediction.get("severity", "ok") != "ok")
    status = "drift" if drift else "warning" if warned else "no_drift"
    return {**result, "status": status, "drift": drift, "features": features,
            "drifted": drifted, "prediction": prediction}


def _estimated_accuracy(scores: FloatArray, kind: str) -> dict[str, Any]:
    """Confidence-based estimate: with calibrated probabilities, the expected accuracy
    of a window is the mean of the maximum class probability."""
    scores = scores[np.isfinite(scores)]
    if kind != "probabilities" or not len(scores):
        return {"estimated": None, "rows": int(len(scores))}
    return {"estimated": float(np.mean(scores)), "rows": int(len(scores))}
