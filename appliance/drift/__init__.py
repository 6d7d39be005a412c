"""Drift detection, accuracy estimation, feedback and KPI correlation (docs/drift.md).

    sampler.py    hot path: a seeded, fixed-size reservoir per model (Algorithm L)
    recent.py     hot path: recent request ids -> prediction, for feedback
    monitor.py    DriftMonitor: observe, windows, the timer, breaches()
    config.py     features from the signature, per-model overrides, their checks
    reference.py  the reference sample and its precomputed PSI bins
    stats.py      KS (scipy), PSI, Benjamini-Hochberg / Bonferroni
    evaluate.py   one window against the reference: the verdict
    store.py      drift.db: references, configs, results, feedback, KPI points
    status.py     status and history documents
    feedback.py   labels and rewards by request id
    kpi.py        KPI points and the shift/KPI correlation report
    settings.py   the [drift] settings

``DriftMonitor`` is imported on first use, so reading the settings does not load scipy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .settings import DriftSettings

if TYPE_CHECKING:
    from .monitor import DriftMonitor

__all__ = ["DriftMonitor", "DriftSettings"]


def __getattr__(name: str) -> Any:
    if name == "DriftMonitor":
        from .monitor import DriftMonitor

        return DriftMonitor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
