"""The statistics of drift detection: two-sample KS, PSI on reference quantile bins, and
the multiple-testing correction across features.

KS is :func:`scipy.stats.ks_2samp` itself, called once per window over every feature
column (``axis=0``), so the statistic and p-value are scipy's to the last bit (the exact
distribution for windows up to 10,000 rows, scipy's ``method="auto"``).

PSI (population stability index) compares the share of the window in each bin with the
reference's share: ``sum((w - r) * ln(w / r))``. The bins are cut at the reference's
quantiles, computed once when the reference is stored (:mod:`.reference`); a share of
zero is floored at :data:`PSI_EPSILON` so one empty bin gives a large, finite value.

The correction adjusts the per-feature KS p-values of one window together: Benjamini-
Hochberg (``"bh"``, false discovery rate, scipy's ``false_discovery_control``) by
default, or Bonferroni (``"bonferroni"``, family-wise error rate, more conservative).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy import stats

Correction = Literal["bh", "bonferroni"]
CORRECTIONS: tuple[str, ...] = ("bh", "bonferroni")
#: floor of a bin's share in PSI (an empty bin would be log(0))
PSI_EPSILON = 1e-4

FloatArray = NDArray[np.float64]


def ks_columns(reference: FloatArray, window: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Two-sample KS statistic and p-value of every column of ``window`` against the
    same column of ``reference`` (rows are observations)."""
    if reference.shape[1] == 0:
        empty = np.zeros(0)
        return empty, empty
    result = stats.ks_2samp(reference, window, axis=0)
    return (np.atleast_1d(np.asarray(result.statistic, dtype=np.float64)),
            np.atleast_1d(np.asarray(result.pvalue, dtype=np.float64)))


def quantile_edges(sample: FloatArray, bins: int) -> FloatArray:
    """The ``bins - 1`` inner edges cutting ``sample`` into ``bins`` equal-count bins
    (duplicates kept: :func:`distinct_bins` says how many bins they really make)."""
    qs = np.arange(1, bins, dtype=np.float64) / bins
    return np.asarray(np.quantile(sample, qs), dtype=np.float64)


def distinct_bins(edges: FloatArray) -> int:
    """How many non-empty-width bins ``edges`` make (ties merge neighbouring bins)."""
    return int(len(np.unique(edges))) + 1


def bin_shares(values: FloatArray, edges: FloatArray) -> FloatArray:
    """The share of ``values`` in each bin ``(-inf, e0], (e0, e1], ..., (e_last, inf)``."""
    counts = np.bincount(np.searchsorted(edges, values, side="left"),
                         minlength=len(edges) + 1)
    return np.asarray(counts / max(len(values), 1), dtype=np.float64)


def psi(reference_shares: FloatArray, window_shares: FloatArray) -> float:
    """Population stability index of two share vectors over the same bins."""
    r = np.maximum(reference_shares, PSI_EPSILON)
    w = np.maximum(window_shares, PSI_EPSILON)
    return float(np.sum((w - r) * np.log(w / r)))


def adjust(pvalues: FloatArray, method: Correction) -> FloatArray:
    """p-values adjusted for testing them together (BH or Bonferroni), capped at 1."""
    if len(pvalues) == 0:
        return pvalues
    if method == "bh":
        return np.asarray(stats.false_discovery_control(pvalues, method="bh"),
                          dtype=np.float64)
    if method == "bonferroni":
        return np.minimum(pvalues * len(pvalues), 1.0)
    raise ValueError(f"unknown correction {method!r}; use one of {', '.join(CORRECTIONS)}")
