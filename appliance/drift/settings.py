"""``[drift]`` settings: the defaults every monitored model starts from.

Per-model overrides (thresholds, bins, correction, per-feature thresholds) are stored
with ``PUT /v1/drift/{model}/config`` (:mod:`.config`), where they can be checked
against the model's signature; the file holds only what needs no signature.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

Positive = Annotated[int, msgspec.Meta(ge=1)]
Share = Annotated[float, msgspec.Meta(gt=0, lt=1)]


class DriftSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Sampling, evaluation and statistics defaults (docs/drift.md)."""

    #: sample production requests and evaluate windows at all
    enabled: bool = True
    #: seconds per evaluation window (the scheduler's interval)
    interval_s: Annotated[float, msgspec.Meta(gt=0)] = 300.0
    #: rows kept per model per window (the reservoir; fixed memory)
    reservoir_rows: Annotated[int, msgspec.Meta(ge=10, le=100_000)] = 2048
    #: below this many sampled rows a window is "insufficient_data", never "drift"
    min_window: Annotated[int, msgspec.Meta(ge=10)] = 200
    #: rows of the first production requests kept as the reference when none is stored
    capture_rows: Annotated[int, msgspec.Meta(ge=10, le=100_000)] = 1000
    #: PSI bins, cut at the reference's quantiles
    bins: Annotated[int, msgspec.Meta(ge=2, le=100)] = 10
    #: significance level of the corrected KS p-values
    alpha: Share = 0.01
    correction: Literal["bh", "bonferroni"] = "bh"
    psi_warning: Annotated[float, msgspec.Meta(gt=0)] = 0.1
    psi_critical: Annotated[float, msgspec.Meta(gt=0)] = 0.25
    #: models with more input features than this are not monitored (e.g. raw bytes)
    max_features: Positive = 256
    #: recent request ids remembered for feedback, and for how long
    feedback_capacity: Positive = 100_000
    feedback_ttl_s: Annotated[float, msgspec.Meta(gt=0)] = 86_400.0
    #: evaluated windows kept per model
    history_windows: Positive = 10_000
    #: seed of the reservoirs (same traffic and seed -> the same samples)
    seed: int = 0
