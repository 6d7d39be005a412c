"""Sample-ratio mismatch: do the arms' logged assignments match the weights in force?

A bandit's weights change at every tick, so the expected count of an arm is not a fixed
share of the total but the sum, over assignments, of that arm's weight when each was made.
:class:`ExpectedCounts` keeps that running float sum per arm on the request path at O(1)
per assignment: it counts assignments made under the current weights object and folds
``count x weights`` into the sums only when the object changes (a new tick) or is read.

:func:`check_srm` compares observed counts (those that reached the store) with those
sums by Pearson's chi-square goodness of fit (``scipy.stats.chisquare``, k - 1 degrees of
freedom), after scaling the expected counts to the observed total: assignments lost on
the way (a dropped log line, a crash before a flush) shrink the total, and only a loss
that favours some arm is a mismatch. Under changing weights each assignment is its own
Bernoulli trial, whose variance is at most the one the chi-square assumes, so the test is
conservative there, never too eager. It alarms below ``alpha`` (default 0.001, the usual
SRM threshold: the check runs continually and a false alarm stops an experiment).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from scipy import stats

__all__ = ["SRM_ALPHA", "ExpectedCounts", "SrmResult", "check_srm"]

SRM_ALPHA = 0.001


@dataclass(frozen=True)
class SrmResult:
    """The chi-square statistic and p-value, whether it alarms, and the counts compared."""

    statistic: float
    p_value: float
    alarm: bool
    observed: dict[str, int]
    #: the expected counts scaled to the observed total (what the test compared with)
    expected: dict[str, float]
    alpha: float


class ExpectedCounts:
    """Running sum per arm of the weights in force at each assignment."""

    __slots__ = ("_current", "_lock", "_run", "_sums")

    def __init__(self) -> None:
        self._sums: dict[str, float] = {}
        self._current: Mapping[str, float] | None = None
        self._run = 0
        self._lock = threading.Lock()

    def add(self, weights: Mapping[str, float], count: int = 1) -> None:
        """Count ``count`` assignments made under ``weights`` (pass the same object for a
        tick's weights, e.g. ``ArmWeights.weights``: a new object starts a new run)."""
        with self._lock:
            if weights is not self._current:
                self._fold()
                self._current = weights
            self._run += count

    def totals(self) -> dict[str, float]:
        """The expected count of every arm seen so far."""
        with self._lock:
            self._fold()
            return dict(self._sums)

    def _fold(self) -> None:
        if self._current is not None and self._run:
            for arm, weight in self._current.items():
                self._sums[arm] = self._sums.get(arm, 0.0) + self._run * weight
        self._run = 0


def check_srm(observed: Mapping[str, int], expected: Mapping[str, float], *,
              alpha: float = SRM_ALPHA) -> SrmResult:
    """Chi-square goodness of fit of ``observed`` assignment counts to ``expected`` (both
    per arm); an arm with no expected count but observed assignments alarms at p = 0."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    arms = sorted(set(observed) | set(expected))
    obs = {arm: int(observed.get(arm, 0)) for arm in arms}
    exp = {arm: float(expected.get(arm, 0.0)) for arm in arms}
    if any(v < 0 for v in obs.values()) or not all(
            math.isfinite(v) and v >= 0 for v in exp.values()):
        raise ValueError(f"counts must be finite and >= 0: observed {obs}, expected {exp}")
    n_obs, n_exp = sum(obs.values()), sum(exp.values())
    if n_obs == 0 or n_exp == 0:
        return SrmResult(0.0, 1.0, False, obs, exp, alpha)
    scaled = {arm: v * n_obs / n_exp for arm, v in exp.items()}
    if any(obs[arm] > 0 and scaled[arm] == 0 for arm in arms):
        return SrmResult(math.inf, 0.0, True, obs, scaled, alpha)
    tested = [arm for arm in arms if scaled[arm] > 0]
    if len(tested) < 2:
        return SrmResult(0.0, 1.0, False, obs, scaled, alpha)
    result = stats.chisquare([obs[arm] for arm in tested], [scaled[arm] for arm in tested])
    statistic, p_value = float(result.statistic), float(result.pvalue)
    return SrmResult(statistic, p_value, p_value < alpha, obs, scaled, alpha)
