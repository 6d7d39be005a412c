"""Shadow comparison: how closely a shadow version's outputs follow production's.

A worker thread hands each request's production and shadow outputs (dicts of arrays keyed
by output name, a row per request row) to :meth:`ShadowComparison.add`, checking e.g. a
quantized student against its teacher before promotion. Each output is judged by kind:

* ``class`` (integer, bool, string: labels): a row agrees when exactly equal (a float
  ``(batch, classes)`` output forced to ``class``: when its argmax is).
* ``vector`` (float): a row agrees when its max absolute difference is within
  ``tolerance`` or, with ``min_cosine`` set, its cosine similarity reaches that. A float
  ``(batch, classes)`` output is also compared by argmax ("argmax agreement").

A row agrees when every compared output does. A shape or dtype-family mismatch (float,
integer, bool, string: float16 vs float32 is compared) makes the request's rows disagree,
its reason kept. Agreements come with a 95 % Wilson interval (scipy's ``binomtest``).

Memory is fixed: per-row scores (max probability, or the scalar output) of both sides
and the shadow-minus-production latencies live in rings of the last ``sample_cap``
values, with no randomness, so the same inputs give the same report. Scores are compared
with drift's PSI (:mod:`appliance.drift.stats`, production as reference). State changes
happen under one lock; the comparison and the report's statistics run outside it.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from scipy import stats

from ..drift.stats import bin_shares, psi, quantile_edges

__all__ = ["KINDS", "PSI_MIN_SAMPLES", "ComparisonSettings", "ShadowComparison"]

Kind = Literal["auto", "class", "vector"]
KINDS: tuple[str, ...] = ("auto", "class", "vector")
#: below this many scores on each side PSI is null ("too few samples")
PSI_MIN_SAMPLES = 100
#: distinct error reasons kept (the rest count as "other"), mismatch reasons, output kinds
MAX_REASONS, MAX_MISMATCH_REASONS, MAX_OUTPUTS = 16, 8, 64
_REASON_CHARS = 200
_NUMERIC = ("float", "integer", "bool")

Array = NDArray[Any]
FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class ComparisonSettings:
    """What to compare and how strictly (checked on construction: ``ValueError``)."""

    #: the output tensor compared; None compares every output both sides return
    output: str | None = None
    kind: Kind = "auto"
    #: a vector row agrees when its max absolute difference is at most this
    tolerance: float = 1e-3
    #: when set, a vector row agrees when its cosine similarity is at least this instead
    min_cosine: float | None = None
    #: also compare the argmax of float (batch, classes) outputs
    argmax: bool = True
    #: PSI bins, cut at the production scores' quantiles
    bins: int = 10
    #: scores and latencies kept (the most recent ones) for PSI and percentiles
    sample_cap: int = 4096

    def __post_init__(self) -> None:
        if self.output is not None and (not isinstance(self.output, str) or not self.output):
            raise ValueError(f"output must be an output tensor name or None, not {self.output!r}")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if not isinstance(self.tolerance, int | float) or not (
                math.isfinite(self.tolerance) and self.tolerance >= 0):
            raise ValueError(f"tolerance must be a finite number >= 0, not {self.tolerance!r}")
        if self.min_cosine is not None and not (
                isinstance(self.min_cosine, int | float) and -1 <= self.min_cosine <= 1):
            raise ValueError(f"min_cosine must be between -1 and 1, or None, not "
                             f"{self.min_cosine!r}")
        if not isinstance(self.argmax, bool):
            raise ValueError(f"argmax must be true or false, not {self.argmax!r}")
        for name, low, high in (("bins", 2, 100), ("sample_cap", PSI_MIN_SAMPLES, 1_000_000)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name} must be an integer from {low} to {high}, not "
                                 f"{value!r}")


@dataclass(slots=True)
class _Totals:
    """Counts and sums that add up over requests: one request's, or all of them so far."""

    requests: int = 0
    rows: int = 0
    agree: int = 0
    argmax_rows: int = 0
    argmax_agree: int = 0
    mismatch_rows: int = 0
    nonfinite_rows: int = 0
    elements: int = 0
    abs_diff_sum: float = 0.0
    cosine_sum: float = 0.0
    cosines: int = 0
    latencies: int = 0
    latency_sum: float = 0.0
    shed: int = 0
    #: not sums: the largest absolute difference, the lowest cosine
    abs_diff_max: float = 0.0
    cosine_min: float = 1.0

    def merge(self, other: _Totals) -> None:
        """Add ``other`` into these totals."""
        for name in _SUMMED:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.abs_diff_max = max(self.abs_diff_max, other.abs_diff_max)
        self.cosine_min = min(self.cosine_min, other.cosine_min)


_SUMMED = tuple(f.name for f in fields(_Totals) if f.name not in ("abs_diff_max", "cosine_min"))


@dataclass(slots=True)
class _Output:
    """One output compared on one request."""

    kind: str
    agree: BoolArray
    argmax: BoolArray | None = None
    mismatch: str | None = None
    vector: _Totals | None = None
    scores: tuple[FloatArray, FloatArray] | None = None


@dataclass(slots=True)
class _Request:
    """One request compared, ready to fold into the accumulator's state."""

    totals: _Totals
    kinds: dict[str, str]
    mismatches: list[str]
    scores: tuple[FloatArray, FloatArray] | None


def _unmatched(rows: int, reason: str, kind: str = "", argmax: bool = False) -> _Output:
    """An output that could not be compared: every row disagrees (argmax too, if any)."""
    none = np.zeros(rows, dtype=np.bool_)
    return _Output(kind, none, argmax=none if argmax else None, mismatch=reason)


@functools.cache
def _family(dtype: np.dtype[Any]) -> str:
    """float, integer, bool, string or the dtype's kind: outputs of different families
    cannot be compared (ml_dtypes' bfloat16 and float8 have numpy kind "V")."""
    if dtype.kind == "f" or dtype.name.startswith(("bfloat", "float")):
        return "float"
    return {"i": "integer", "u": "integer", "b": "bool", "U": "string", "S": "string",
            "O": "string"}.get(dtype.kind, dtype.kind)


def _rows(a: Array) -> Array:
    """``a`` as (rows, values per row); a 0-d array is one row of one value."""
    return a.reshape(1, 1) if a.ndim == 0 else a.reshape(a.shape[0], math.prod(a.shape[1:]))


def _compare_vector(p: FloatArray, s: FloatArray, settings: ComparisonSettings) -> _Output:
    """Max abs difference and cosine per row; non-finite values only on a slow path."""
    with np.errstate(all="ignore"):
        diff = np.abs(p - s)
        both = np.stack((p, s))
        dots = np.einsum("aij,bij->abi", both, both)  # one call: p.p, p.s, s.s per row
        norms = np.sqrt(dots[0, 0] * dots[1, 1])
        cos = dots[0, 1] / norms
        finite = np.isfinite(diff)
        all_finite = bool(finite.all())
        if not all_finite:  # identical values (inf, or NaN in both) agree; the rest never
            diff[(p == s) | (np.isnan(p) & np.isnan(s))] = 0.0
            finite = np.isfinite(diff)
            diff[~finite] = np.inf
    row_max = diff.max(axis=1, initial=0.0)
    if not (norms > 0).all():  # a zero row: same direction only as another zero row
        cos = np.where(norms > 0, cos, np.where(row_max == 0, 1.0, 0.0))
    agree = row_max <= settings.tolerance if settings.min_cosine is None \
        else cos >= settings.min_cosine
    kept, cos = (diff, cos) if all_finite else (diff[finite], cos[np.isfinite(cos)])
    stats_ = _Totals(elements=int(kept.size),
                     abs_diff_sum=float(kept.sum()), abs_diff_max=float(kept.max(initial=0.0)),
                     cosine_sum=float(cos.sum()), cosines=int(cos.size),
                     cosine_min=float(cos.min(initial=1.0)),
                     nonfinite_rows=0 if all_finite else int(np.count_nonzero(~finite.all(1))))
    return _Output("vector", agree, vector=stats_)


def _compare_one(name: str, p: Array, s: Array, rows: int, settings: ComparisonSettings,
                 scores: bool = False) -> _Output:
    """Compare one output's rows; a mismatch disagrees on every row, with its reason.
    With ``scores``, also the per-row PSI scores: a row's max, or its scalar value."""
    family = _family(p.dtype)
    kind = settings.kind if settings.kind != "auto" else \
        ("vector" if family == "float" else "class")
    by_class = family == "float" and p.ndim == 2 and p.shape[1] > 1  # (batch, classes)
    reason = None
    if p.shape != s.shape:
        reason = f"{name}: shape {p.shape} vs shadow {s.shape}"
    elif family != _family(s.dtype):
        reason = f"{name}: dtype {p.dtype} vs shadow {s.dtype}"
    elif (n := 1 if p.ndim == 0 else p.shape[0]) != rows:
        reason = f"{name}: {n} rows where the request has {rows}"
    elif kind == "vector" and family not in _NUMERIC:
        reason = f"{name}: {p.dtype} cannot be compared as a vector"
    if reason is not None:
        return _unmatched(rows, reason, kind, by_class and settings.argmax)
    # numeric outputs are compared in float64 (strings only ever by the class path)
    pf, sf = (_rows(p).astype(np.float64), _rows(s).astype(np.float64)) \
        if family in _NUMERIC else (_rows(p), _rows(s))
    argmax = pf.argmax(axis=1) == sf.argmax(axis=1) if by_class else None
    if kind == "vector":
        out = _compare_vector(pf, sf, settings)
    else:  # exact, on the original values (int64 labels beyond 2**53 stay distinct)
        out = _Output("class", argmax if argmax is not None
                      else (_rows(p) == _rows(s)).all(axis=1))
    out.argmax = argmax if settings.argmax else None
    if scores and family in _NUMERIC and pf.size:
        ps, ss = pf.max(axis=1), sf.max(axis=1)
        finite = np.isfinite(ps) & np.isfinite(ss)
        out.scores = (ps, ss) if finite.all() else (ps[finite], ss[finite])
    return out


def _compare_request(prod: dict[str, Array], shad: dict[str, Array],
                     settings: ComparisonSettings) -> _Request:
    """Compare every chosen output of one request (no shared state: runs unlocked)."""
    names = [settings.output] if settings.output is not None \
        else sorted(prod.keys() & shad.keys())
    first = next((prod[n] for n in names if n in prod), next(iter(prod.values()), None))
    rows = 1 if first is None or first.ndim == 0 else first.shape[0]
    # the score output depends on production's names and dtypes only, so it is stable
    numeric = [n for n in names if n in prod and _family(prod[n].dtype) in _NUMERIC]
    score_name = next((n for n in numeric if _family(prod[n].dtype) == "float"),
                      numeric[0] if numeric else None)
    outputs: dict[str, _Output] = {}
    for name in names:
        if name not in prod or name not in shad:
            side = "production" if name not in prod else "shadow"
            outputs[name] = _unmatched(rows, f"{name}: missing from {side}")
            continue
        try:
            outputs[name] = _compare_one(name, prod[name], shad[name], rows, settings,
                                         scores=name == score_name)
        except (TypeError, ValueError) as exc:  # e.g. object arrays numpy cannot compare
            outputs[name] = _unmatched(rows, f"{name}: {type(exc).__name__}: {exc}")
    if not names:
        outputs[""] = _unmatched(rows, f"no common outputs (production: {sorted(prod)}, "
                                       f"shadow: {sorted(shad)})")
    results = list(outputs.values())
    agree = np.logical_and.reduce([o.agree for o in results])
    argmaxes = [o.argmax for o in results if o.argmax is not None]
    argmax = np.logical_and.reduce(argmaxes) if argmaxes else np.zeros(0, dtype=np.bool_)
    mismatches = [o.mismatch[:_REASON_CHARS] for o in results if o.mismatch is not None]
    totals = _Totals(requests=1, rows=rows, agree=int(np.count_nonzero(agree)),
                     argmax_rows=len(argmax), argmax_agree=int(np.count_nonzero(argmax)),
                     mismatch_rows=rows if mismatches else 0)
    for out in results:
        if out.vector is not None:
            totals.merge(out.vector)
    return _Request(totals, {n: o.kind for n, o in outputs.items() if o.kind}, mismatches,
                    outputs[score_name].scores if score_name is not None else None)


class _Ring:
    """The most recent ``cap`` float values, in fixed memory."""

    __slots__ = ("_data", "_filled", "_pos")

    def __init__(self, cap: int) -> None:
        self._data = np.zeros(cap, dtype=np.float64)
        self._pos, self._filled = 0, 0

    def extend(self, values: FloatArray) -> None:
        cap = len(self._data)
        values = values[-cap:]
        end = self._pos + len(values)
        if end <= cap:
            self._data[self._pos:end] = values
        else:
            np.put(self._data, np.arange(self._pos, end), values, mode="wrap")
        self._pos, self._filled = end % cap, min(self._filled + len(values), cap)

    def values(self) -> FloatArray:
        return self._data[:self._filled].copy()


def _interval(k: int, n: int) -> tuple[float | None, list[float] | None]:
    """The fraction k/n and its 95 % Wilson interval; None for no rows."""
    if n == 0:
        return None, None
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return k / n, [float(ci.low), float(ci.high)]


def _score_psi(prod: FloatArray, shad: FloatArray, bins: int) -> tuple[float | None, str | None]:
    """PSI of shadow scores against production's (its quantile bins), or None and why."""
    if (n := min(len(prod), len(shad))) < PSI_MIN_SAMPLES:
        return None, f"too few samples ({n} < {PSI_MIN_SAMPLES})"
    edges = quantile_edges(prod, bins)
    return psi(bin_shares(prod, edges), bin_shares(shad, edges)), None


class ShadowComparison:
    """Accumulates production-vs-shadow agreement for one (model, shadow version) pair.

    Thread safe: :meth:`add`, :meth:`add_error`, :meth:`add_shed` and :meth:`report`
    may be called from different threads; none of them raises for bad outputs.
    """

    def __init__(self, settings: ComparisonSettings | None = None) -> None:
        self.settings = settings or ComparisonSettings()
        cap = self.settings.sample_cap
        self._lock = threading.Lock()
        self._totals = _Totals()
        self._kinds: dict[str, str] = {}
        self._mismatches: list[str] = []
        self._errors: dict[str, int] = {}
        self._production_scores, self._shadow_scores = _Ring(cap), _Ring(cap)
        self._latency = _Ring(cap)

    def add(self, production: Mapping[str, Array], shadow: Mapping[str, Array],
            production_latency_s: float, shadow_latency_s: float) -> None:
        """Compare one request's production and shadow outputs, row by row."""
        request = _compare_request({k: np.asarray(v) for k, v in production.items()},
                                   {k: np.asarray(v) for k, v in shadow.items()},
                                   self.settings)
        delta = float(shadow_latency_s) - float(production_latency_s)
        if math.isfinite(delta):  # a NaN timing is no latency
            request.totals.latencies, request.totals.latency_sum = 1, delta
        with self._lock:
            self._totals.merge(request.totals)
            if len(self._kinds) < MAX_OUTPUTS:  # the names of one model's outputs
                self._kinds.update(request.kinds)
            for reason in request.mismatches:
                if reason not in self._mismatches and \
                        len(self._mismatches) < MAX_MISMATCH_REASONS:
                    self._mismatches.append(reason)
            if request.scores is not None:
                self._production_scores.extend(request.scores[0])
                self._shadow_scores.extend(request.scores[1])
            if request.totals.latencies:
                self._latency.extend(np.array([delta]))

    def add_error(self, reason: str) -> None:
        """Count a shadow call that raised, by reason (distinct reasons are bounded)."""
        reason = str(reason)[:_REASON_CHARS] or "unknown"
        with self._lock:
            if reason not in self._errors and len(self._errors) >= MAX_REASONS:
                reason = "other"
            self._errors[reason] = self._errors.get(reason, 0) + 1

    def add_shed(self) -> None:
        """Count a copy dropped because the shadow queue was full."""
        with self._lock:
            self._totals.shed += 1

    def report(self) -> dict[str, Any]:
        """The comparison so far, as a JSON-serialisable dict (see the module docstring)."""
        with self._lock:
            t, kinds, errors = replace(self._totals), dict(self._kinds), dict(self._errors)
            mismatches, latency = list(self._mismatches), self._latency.values()
            prod, shad = self._production_scores.values(), self._shadow_scores.values()
        agreement, agreement_ci = _interval(t.agree, t.rows)
        argmax, argmax_ci = _interval(t.argmax_agree, t.argmax_rows)
        psi_value, psi_reason = _score_psi(prod, shad, self.settings.bins)
        p50, p95 = (float(v) for v in 1000 * np.percentile(latency, [50, 95])) \
            if len(latency) else (None, None)
        distinct, settings = set(kinds.values()), self.settings
        return {
            "requests": t.requests, "rows": t.rows,
            "kind": None if not distinct else distinct.pop() if len(distinct) == 1 else "mixed",
            "outputs": kinds,
            "criterion": f"max_abs_diff <= {settings.tolerance}" if settings.min_cosine
            is None else f"cosine >= {settings.min_cosine}",
            "agreement": agreement, "agreement_interval": agreement_ci,
            "argmax_rows": t.argmax_rows, "argmax_agreement": argmax,
            "argmax_agreement_interval": argmax_ci,
            "mismatch_rows": t.mismatch_rows, "mismatch_reasons": mismatches,
            "max_abs_diff": t.abs_diff_max if t.elements else None,
            "mean_abs_diff": t.abs_diff_sum / t.elements if t.elements else None,
            # rounding can put a cosine a hair beyond [-1, 1]
            "mean_cosine": min(1.0, t.cosine_sum / t.cosines) if t.cosines else None,
            "lowest_cosine": max(-1.0, t.cosine_min) if t.cosines else None,
            "nonfinite_rows": t.nonfinite_rows,
            "psi": psi_value, "psi_reason": psi_reason, "score_samples": len(prod),
            "latency_delta_ms": {"p50": p50, "p95": p95, "mean": 1000 * t.latency_sum
                                 / t.latencies if t.latencies else None},
            "latency_samples": len(latency), "errors": errors, "shed": t.shed,
        }
