"""What is monitored for a model: its feature columns, its prediction, its thresholds.

Features come from the signature: every numeric input whose dimensions after the batch
are fixed contributes one column per element, named ``input`` for a ``[-1]`` or
``[-1, 1]`` tensor and ``input[j]`` (row-major index) otherwise. The prediction is the
first floating output of shape ``[-1, K>=2]`` (class probabilities: its maximum is the
confidence, its arg-max the predicted class), else the first column of the first
numeric output. A :class:`DriftConfig` overrides the ``[drift]`` defaults for one model;
:func:`check_config` refuses (400) a configuration naming features or outputs the
signature does not have, so a typo fails when it is set, not at evaluation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Literal

import msgspec

from ..errors import BadRequest
from ..signature import TensorSpec
from .settings import DriftSettings

NUMERIC = frozenset({"UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32",
                     "INT64", "FP16", "FP32", "FP64", "BOOL"})


@dataclass(frozen=True, slots=True)
class InputColumns:
    """The columns one input tensor contributes: ``width`` per row, in order."""

    name: str
    width: int
    features: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Layout:
    """A model's monitored columns (inputs in signature order) and prediction output."""

    inputs: tuple[InputColumns, ...]
    prediction_output: str | None
    #: "probabilities" (max = confidence, arg-max = class) or "value" (first column)
    prediction_kind: Literal["probabilities", "value"]

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(f for i in self.inputs for f in i.features)

    @property
    def width(self) -> int:
        return sum(i.width for i in self.inputs)


def input_columns(spec: TensorSpec) -> InputColumns | None:
    """The columns of one input, or None when it cannot be monitored (non-numeric, or a
    dimension after the batch that varies)."""
    if spec.datatype not in NUMERIC or not spec.shape:
        return None
    rest = spec.shape[1:]
    if any(d < 0 for d in rest):
        return None
    width = math.prod(rest) if rest else 1
    if width == 1:
        return InputColumns(spec.name, 1, (spec.name,))
    return InputColumns(spec.name, width, tuple(f"{spec.name}[{j}]" for j in range(width)))


def _prediction(outputs: list[TensorSpec], chosen: str | None
                ) -> tuple[str | None, Literal["probabilities", "value"]]:
    numeric = [o for o in outputs if o.datatype in NUMERIC and o.shape]
    if chosen is not None:
        numeric = [o for o in numeric if o.name == chosen]
    for o in numeric:
        if o.datatype.startswith("FP") and len(o.shape) == 2 and o.shape[1] >= 2:
            return o.name, "probabilities"
    return (numeric[0].name, "value") if numeric else (None, "value")


def layout_of(inputs: Iterable[TensorSpec], outputs: Iterable[TensorSpec],
              prediction_output: str | None = None) -> Layout:
    """The monitored columns and prediction of a signature."""
    columns = tuple(c for c in (input_columns(s) for s in inputs) if c is not None)
    name, kind = _prediction(list(outputs), prediction_output)
    return Layout(columns, name, kind)


class FeatureThresholds(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    psi_warning: Annotated[float, msgspec.Meta(gt=0)] | None = None
    psi_critical: Annotated[float, msgspec.Meta(gt=0)] | None = None
    #: leave the feature out of the tests (and of the correction)
    ignore: bool = False


class DriftConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Per-model overrides of ``[drift]``; unset fields take the settings' values."""

    bins: Annotated[int, msgspec.Meta(ge=2, le=100)] | None = None
    alpha: Annotated[float, msgspec.Meta(gt=0, lt=1)] | None = None
    correction: Literal["bh", "bonferroni"] | None = None
    psi_warning: Annotated[float, msgspec.Meta(gt=0)] | None = None
    psi_critical: Annotated[float, msgspec.Meta(gt=0)] | None = None
    min_window: Annotated[int, msgspec.Meta(ge=10)] | None = None
    #: the output whose distribution is watched (default: see the module docstring)
    prediction_output: str | None = None
    #: per-feature thresholds, keyed by feature name (``input[3]``)
    features: dict[str, FeatureThresholds] = msgspec.field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Effective:
    """The thresholds one evaluation uses: settings, overridden by the model's config."""

    bins: int
    alpha: float
    correction: Literal["bh", "bonferroni"]
    psi_warning: float
    psi_critical: float
    min_window: int
    features: dict[str, FeatureThresholds]

    def thresholds(self, feature: str) -> tuple[float, float]:
        own = self.features.get(feature)
        warning = own.psi_warning if own and own.psi_warning is not None else self.psi_warning
        critical = (own.psi_critical if own and own.psi_critical is not None
                    else self.psi_critical)
        return warning, critical

    def ignored(self, feature: str) -> bool:
        own = self.features.get(feature)
        return bool(own and own.ignore)


def effective(settings: DriftSettings, config: DriftConfig | None) -> Effective:
    """``config`` over ``settings``."""
    c = config or DriftConfig()
    return Effective(
        bins=settings.bins if c.bins is None else c.bins,
        alpha=settings.alpha if c.alpha is None else c.alpha,
        correction=settings.correction if c.correction is None else c.correction,
        psi_warning=settings.psi_warning if c.psi_warning is None else c.psi_warning,
        psi_critical=settings.psi_critical if c.psi_critical is None else c.psi_critical,
        min_window=settings.min_window if c.min_window is None else c.min_window,
        features=dict(c.features))


def check_config(model: str, config: DriftConfig, inputs: list[TensorSpec],
                 outputs: list[TensorSpec], settings: DriftSettings) -> None:
    """BadRequest naming what in ``config`` the model's signature does not have."""
    layout = layout_of(inputs, outputs)
    known = set(layout.features)
    unknown = sorted(set(config.features) - known)
    if unknown:
        sample = ", ".join(layout.features[:5]) + (", ..." if len(known) > 5 else "")
        raise BadRequest(f"drift config for {model!r} names unknown feature(s) "
                         f"{', '.join(repr(u) for u in unknown)}; the model's features are "
                         f"{sample or 'none'} ({len(known)} in all)")
    if config.prediction_output is not None:
        names = [o.name for o in outputs]
        if config.prediction_output not in names:
            raise BadRequest(f"drift config for {model!r}: prediction_output "
                             f"{config.prediction_output!r} is not an output of the model; "
                             f"outputs: {', '.join(names)}")
    eff = effective(settings, config)
    for feature in [None, *config.features]:
        warning, critical = eff.thresholds(feature) if feature else (eff.psi_warning,
                                                                     eff.psi_critical)
        if warning >= critical:
            where = f"feature {feature!r}" if feature else "the model"
            raise BadRequest(f"drift config for {model!r}: psi_warning ({warning}) must be "
                             f"below psi_critical ({critical}) for {where}")
