"""What ``GET /v1/drift/{model}`` and ``appliance drift status|history`` show.

A window's stored result is what the evaluation saw; realised accuracy is added when the
result is read, from the labels received so far for requests answered inside the window
(labels usually arrive after the window closed).
"""

from __future__ import annotations

from typing import Any

from ..errors import NotFound
from .config import effective
from .monitor import DriftMonitor
from .store import DriftStore


def with_realised(store: DriftStore, model: str, result: dict[str, Any]) -> dict[str, Any]:
    """``result`` with ``accuracy.realised`` and ``accuracy.labelled_rows``."""
    window = result["window"]
    labelled, realised = store.realised_accuracy(model, window["start"], window["end"])
    return {**result, "accuracy": {**result.get("accuracy", {}), "realised": realised,
                                   "labelled_rows": labelled}}


def history(store: DriftStore, model: str, limit: int = 100) -> list[dict[str, Any]]:
    """The model's newest ``limit`` window results, oldest first, with realised accuracy
    (NotFound when the model has never been evaluated here and has no reference)."""
    results = store.results(model, limit=limit)
    if not results and model not in store.monitored_models():
        raise NotFound(f"no drift results or reference for model {model!r}; drift is "
                       "evaluated for models that answer production traffic")
    return [with_realised(store, model, r) for r in results]


def summary(result: dict[str, Any] | None) -> dict[str, Any] | None:
    """A window result without its per-feature table (for history listings)."""
    if result is None:
        return None
    return {k: v for k, v in result.items() if k != "features"}


def status(monitor: DriftMonitor, model: str) -> dict[str, Any]:
    """Status, latest result (per-feature stats included), reference and sampling of a
    served model; NotFound for a model neither served nor known to the drift store."""
    try:
        monitor.signature_of(model, None)
    except NotFound:
        if model not in monitor.store.monitored_models():
            raise
    reference = monitor.reference(model)
    latest = monitor.latest(model)
    eff = effective(monitor.settings, monitor.config(model))
    sampling = monitor.sampling(model)
    if latest is not None:
        state = latest["status"]
    elif reference is None:
        state = "no_reference"
    else:
        state = "insufficient_data"
    return {"model": model, "status": state,
            "drift": bool(latest and latest["drift"]),
            "latest": with_realised(monitor.store, model, latest) if latest else None,
            "reference": reference.describe() if reference else None,
            "sampling": sampling,
            "config": {"bins": eff.bins, "alpha": eff.alpha, "correction": eff.correction,
                       "psi_warning": eff.psi_warning, "psi_critical": eff.psi_critical,
                       "min_window": eff.min_window,
                       "interval_s": monitor.settings.interval_s,
                       "reservoir_rows": monitor.settings.reservoir_rows}}


def offline_status(store: DriftStore, model: str) -> dict[str, Any]:
    """What the CLI can say from ``drift.db`` alone (no live sampling state)."""
    results = store.results(model, limit=1)
    reference = store.reference(model)
    if not results and reference is None:
        raise NotFound(f"no drift results or reference for model {model!r} in this data "
                       "directory")
    latest = with_realised(store, model, results[-1]) if results else None
    return {"model": model,
            "status": latest["status"] if latest else "insufficient_data",
            "drift": bool(latest and latest["drift"]), "latest": latest,
            "reference": reference.describe() if reference else None}
