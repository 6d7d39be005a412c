"""Canary analysis: is the candidate version worse than production over the same period?

Every analysis interval the caller hands :func:`analyse` one :class:`CanaryWindow` per
version. Both windows are cumulative **since the canary began**, not since its current
step: a step changes how fast the candidate's evidence arrives, not the error rate it is
judged on, so resetting at every step would throw away what a low-traffic box needs most;
production keeps its earlier requests when the last step (100 %) leaves it none; and one
growing sample per version is what the always-valid error test below is built on. (A
caller that restarts the windows at each step restarts that guarantee with them.)

**Error rate** (``error_rate``). The analysis runs every interval for as long as the
canary lasts, so a per-look test at level ``alpha`` would roll back a healthy canary with
a probability that grows with the number of looks. Instead each version's error rate gets
a *confidence sequence*: bounds that hold at every look at once. For a Bernoulli stream the
Beta-mixture likelihood ratio ``M_n(p) = B(a + x, b + n - x) / B(a, b) / (p^x (1-p)^(n-x))``
is a nonnegative martingale under rate ``p`` (Robbins 1970), so by Ville's inequality
``P(M_n(p) >= 2 / alpha for some n) <= alpha / 2``; the rates with ``M_n < 2 / alpha``
form the sequence. The canary fails when the candidate's lower bound exceeds production's
upper bound by more than ``max_error_excess``: a union bound over the two sequences keeps
the probability of ever rolling back a candidate that is no worse than that below
``alpha``, whatever the traffic, the step weights or the number of looks (assuming each
version's requests fail independently at a steady rate). The mixing distribution
``Beta(1/2, 20)`` (mean 2.4 %) spends the test's power on error rates of a few per cent,
where canary decisions lie. A bound is the root of ``log M_n`` in ``log p``, which is
convex there; Newton's method from the linear approximation's root climbs to it from below
(so a bound is never too tight) in at most :data:`NEWTON_STEPS` vectorised steps, and
:func:`excess_lower_bound` runs a whole simulation's looks at once. The check passes once
the candidate has ``min_samples`` requests (rule of three: 300 clean requests bound a rate
below 1 % with 95 % confidence), production as many, and the observed excess is within
the margin; a bad candidate whose first requests look healthy may pass early, and the
cumulative windows catch it at a later step. Simulated (the tests): no rollback of 1,000
healthy canaries at 0.2-5 requests/min over an hour; 5 % errors against 0.5 % are rolled
back on a median of ~260 candidate requests.

**Latency** (``latency_p95``). The limit is ``max(ratio x p95_prod, p95_prod + slack)``,
the slack keeping sub-millisecond models from failing on jitter. With ``min_samples``
latencies on both sides the check passes when the candidate's p95 is within it and fails
when an exact one-sided binomial test (``scipy.stats.binomtest``) finds significantly
more than 5 % of the candidate's latencies above it, the distribution-free test of a
quantile. That test is per look, not always-valid (the sample is a bounded reservoir, not
a growing stream); the ratio's margin keeps a healthy candidate far from the limit.

**Scores** (``score_psi``). PSI of the candidate's scores on ``psi_bins`` bins cut at
production's quantiles (:mod:`appliance.drift.stats`); with ``min_samples`` scores on
both sides it fails at ``psi_critical`` and passes below it.

**Verdict**. Any check failing is ``fail``; every check passing is ``pass``; anything
else (no data, too few samples, a breach not yet significant) is ``hold``, never ``fail``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special, stats

from ..drift.stats import FloatArray, bin_shares, distinct_bins, psi, quantile_edges

__all__ = ["DEFAULT_THRESHOLDS", "Analysis", "CanaryThresholds", "CanaryWindow", "CheckResult",
           "Verdict", "analyse", "error_rate_breached", "excess_lower_bound"]

Verdict = Literal["hold", "pass", "fail"]
#: the Beta mixing distribution of the error-rate confidence sequences
PRIOR_A, PRIOR_B = 0.5, 20.0
#: at most this many Newton steps to a bound, stopping once a step moves ``log p`` less
#: than the tolerance (10 steps reach ~1e-14 relative from the start point)
NEWTON_STEPS, TOLERANCE = 12, 1e-10
P95 = 0.95
ERROR_TEST = "Beta(1/2, 20)-mixture confidence sequences, alpha split over both versions"
LATENCY_TEST = "p95 ratio; exact one-sided binomial test of the share above the limit"
PSI_TEST = "PSI on production's score quantile bins"


def _require(ok: bool, name: str, value: object, what: str) -> None:
    if not ok:
        raise ValueError(f"canary threshold {name}={value!r} is invalid: use {what}")


def _sample(name: str, values: ArrayLike) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or not np.all(np.isfinite(array)):
        raise ValueError(f"canary window {name} must be a 1-D array of finite numbers")
    return array


@dataclass(frozen=True)
class CanaryThresholds:
    """What the candidate must meet, compared with production."""

    #: how far the candidate's error rate may exceed production's (0.005: half a point)
    max_error_excess: float = 0.005
    #: the candidate's p95 latency may be up to this times production's ...
    latency_p95_ratio: float = 1.5
    #: ... or production's plus this many seconds, whichever is larger
    latency_slack_s: float = 0.002
    #: PSI of the score distribution at which the candidate fails
    psi_critical: float = 0.25
    psi_bins: int = 10
    #: requests (and latency / score samples) each version needs before a check passes
    min_samples: int = 300
    #: the chance of ever rolling back a candidate that is no worse than the limits
    alpha: float = 0.01

    def __post_init__(self) -> None:
        _require(0 <= self.max_error_excess < 1, "max_error_excess",
                 self.max_error_excess, "a share in [0, 1), e.g. 0.005 for half a point")
        _require(self.latency_p95_ratio >= 1, "latency_p95_ratio", self.latency_p95_ratio,
                 "at least 1 (1.5 allows a p95 50 % above production's)")
        _require(self.latency_slack_s >= 0, "latency_slack_s", self.latency_slack_s,
                 "seconds, at least 0")
        _require(self.psi_critical > 0, "psi_critical", self.psi_critical,
                 "above 0 (0.25 is the usual critical PSI)")
        _require(isinstance(self.psi_bins, int) and self.psi_bins >= 2, "psi_bins",
                 self.psi_bins, "an integer of at least 2")
        _require(isinstance(self.min_samples, int) and self.min_samples >= 1, "min_samples",
                 self.min_samples, "an integer of at least 1 (300: the rule of three for 1 %)")
        _require(0 < self.alpha < 0.5, "alpha", self.alpha, "in (0, 0.5), e.g. 0.01")

    def to_dict(self) -> dict[str, float | int]:
        """The thresholds as a JSON-serialisable dict."""
        return asdict(self)


DEFAULT_THRESHOLDS = CanaryThresholds()


@dataclass(frozen=True, eq=False)
class CanaryWindow:
    """One version's traffic since the canary began: counts, and bounded samples of the
    latencies (seconds) and scores (e.g. the top-class probability) of its requests."""

    requests: int
    errors: int
    latencies: FloatArray = field(default_factory=lambda: np.zeros(0))
    scores: FloatArray = field(default_factory=lambda: np.zeros(0))

    def __post_init__(self) -> None:
        if not 0 <= int(self.errors) <= int(self.requests):
            raise ValueError(f"canary window has {self.errors} errors in {self.requests} "
                             "requests: need 0 <= errors <= requests")
        object.__setattr__(self, "requests", int(self.requests))
        object.__setattr__(self, "errors", int(self.errors))
        object.__setattr__(self, "latencies", _sample("latencies", self.latencies))
        object.__setattr__(self, "scores", _sample("scores", self.scores))

    def describe(self) -> dict[str, int]:
        """The window's sizes, for the evidence."""
        return {"requests": self.requests, "errors": self.errors,
                "latency_samples": len(self.latencies), "score_samples": len(self.scores)}


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome: the value compared, its threshold, the sample size, the test."""

    name: str
    verdict: Verdict
    value: float | None
    threshold: float
    n: int
    test: str
    reason: str
    details: dict[str, float | int | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The result as a JSON-serialisable dict."""
        return asdict(self)


@dataclass(frozen=True)
class Analysis:
    """The verdict of one analysis interval and the checks it rests on."""

    verdict: Verdict
    checks: tuple[CheckResult, ...]
    thresholds: CanaryThresholds
    windows: dict[str, dict[str, int]]

    def check(self, name: str) -> CheckResult:
        """The check called ``name`` (``error_rate``, ``latency_p95``, ``score_psi``)."""
        for result in self.checks:
            if result.name == name:
                return result
        raise KeyError(f"no canary check {name!r}")

    @property
    def reason(self) -> str:
        """Why: the failing checks' reasons, else the holding ones', else "all checks pass"."""
        for verdict in ("fail", "hold"):
            reasons = [f"{c.name}: {c.reason}" for c in self.checks if c.verdict == verdict]
            if reasons:
                return "; ".join(reasons)
        return "all checks pass"

    def evidence(self) -> dict[str, Any]:
        """The analysis as a JSON-serialisable dict for the audit chain."""
        return {"verdict": self.verdict, "reason": self.reason,
                "checks": [c.to_dict() for c in self.checks],
                "thresholds": self.thresholds.to_dict(), "windows": self.windows}


def _lower_bounds(errors: FloatArray, requests: FloatArray, a: FloatArray | float,
                  b: FloatArray | float, log_level: float) -> FloatArray:
    """Lower ends of the Beta(a, b)-mixture confidence sequences (0 without errors)."""
    some = errors > 0
    x = np.where(some, errors, 1.0)  # a well-posed stand-in where there is no root
    n = np.where(some, requests, np.maximum(requests, 1.0))
    offset = special.betaln(a + x, b + n - x) - special.betaln(a, b) - log_level
    u = offset / x  # root of the small-p approximation: left of the root, where g > 0
    for _ in range(NEWTON_STEPS):
        p = np.exp(u)
        step = (offset - x * u - (n - x) * np.log1p(-p)) / (-x + (n - x) * p / (1.0 - p))
        u = u - step
        if np.all(np.abs(step) < TOLERANCE):
            break
    return np.where(some, np.exp(u), 0.0)


def excess_lower_bound(candidate_errors: ArrayLike, candidate_requests: ArrayLike,
                       production_errors: ArrayLike, production_requests: ArrayLike,
                       alpha: float) -> FloatArray:
    """How much the candidate's error rate exceeds production's at least, at every look
    with probability ``1 - alpha`` (each version's sequence at ``alpha / 2``); vectorised
    over arrays of counts, e.g. every look of every simulated canary at once."""
    x = np.stack(np.broadcast_arrays(np.asarray(candidate_errors, dtype=np.float64),
                                     np.asarray(production_errors, dtype=np.float64)))
    n = np.stack(np.broadcast_arrays(np.asarray(candidate_requests, dtype=np.float64),
                                     np.asarray(production_requests, dtype=np.float64)))
    # one pass: the candidate's lower end and the lower end of production's success rate
    shape = (2,) + (1,) * (x.ndim - 1)
    lows = _lower_bounds(np.stack([x[0], n[1] - x[1]]), n,
                         np.array([PRIOR_A, PRIOR_B]).reshape(shape),
                         np.array([PRIOR_B, PRIOR_A]).reshape(shape),
                         float(np.log(2.0 / alpha)))
    return np.asarray(lows[0] - (1.0 - lows[1]), dtype=np.float64)


def error_rate_breached(excess_lower: ArrayLike,
                        thresholds: CanaryThresholds = DEFAULT_THRESHOLDS) -> NDArray[np.bool_]:
    """Whether a lower bound from :func:`excess_lower_bound` means the candidate fails."""
    return np.asarray(excess_lower, dtype=np.float64) > thresholds.max_error_excess


def _error_rate(c: CanaryWindow, p: CanaryWindow, t: CanaryThresholds) -> CheckResult:
    need = t.min_samples
    bound = float(excess_lower_bound(c.errors, c.requests, p.errors, p.requests, t.alpha))
    rate_c = c.errors / c.requests if c.requests else None
    rate_p = p.errors / p.requests if p.requests else None
    excess = rate_c - rate_p if rate_c is not None and rate_p is not None else None
    details: dict[str, float | int | None] = {
        "candidate_rate": rate_c, "production_rate": rate_p, "excess_lower_bound": bound,
        "candidate_errors": c.errors, "production_errors": p.errors,
        "production_requests": p.requests, "alpha": t.alpha}
    verdict: Verdict = "hold"
    if bool(error_rate_breached(bound, t)):
        verdict, reason = "fail", (f"error rate exceeds production's by more than "
                                   f"{t.max_error_excess:g} (lower bound {bound:.4f})")
    elif excess is None:
        reason = "no data: " + ("no candidate requests" if rate_c is None
                                else "no production requests")
    elif c.requests < need or p.requests < need:
        reason = f"too few requests ({c.requests} candidate, {p.requests} production; {need})"
    elif excess > t.max_error_excess:
        reason = f"observed excess {excess:.4f} above the margin, not yet significant"
    else:
        verdict, reason = "pass", f"observed excess {excess:.4f} within the margin"
    return CheckResult("error_rate", verdict, excess, t.max_error_excess, c.requests,
                       ERROR_TEST, reason, details)


def _too_few(name: str, c: FloatArray, p: FloatArray, t: CanaryThresholds, threshold: float,
             test: str, what: str) -> CheckResult | None:
    if len(c) == 0 or len(p) == 0:
        side = "candidate" if len(c) == 0 else "production"
        return CheckResult(name, "hold", None, threshold, len(c), test,
                           f"no data: no {side} {what}", {"n_production": len(p)})
    if min(len(c), len(p)) < t.min_samples:
        return CheckResult(name, "hold", None, threshold, len(c), test,
                           f"too few {what} ({len(c)} candidate, {len(p)} production; "
                           f"{t.min_samples})", {"n_production": len(p)})
    return None


def _latency(c: CanaryWindow, p: CanaryWindow, t: CanaryThresholds) -> CheckResult:
    if len(p.latencies):
        p95_p = float(np.quantile(p.latencies, P95))
        limit = max(t.latency_p95_ratio * p95_p, p95_p + t.latency_slack_s)
    else:
        p95_p, limit = 0.0, t.latency_slack_s
    held = _too_few("latency_p95", c.latencies, p.latencies, t, limit, LATENCY_TEST,
                    "latencies")
    if held is not None:
        return held
    n = len(c.latencies)
    p95_c = float(np.quantile(c.latencies, P95))
    above = int(np.count_nonzero(c.latencies > limit))
    details: dict[str, float | int | None] = {
        "production_p95": p95_p, "n_production": len(p.latencies), "above_limit": above,
        "p_value": None}
    if p95_c <= limit:
        return CheckResult("latency_p95", "pass", p95_c, limit, n, LATENCY_TEST,
                           f"p95 {p95_c:.4g} s within {limit:.4g} s", details)
    p_value = float(stats.binomtest(above, n, 1.0 - P95, alternative="greater").pvalue)
    details["p_value"] = p_value
    if p_value < t.alpha:
        return CheckResult("latency_p95", "fail", p95_c, limit, n, LATENCY_TEST,
                           f"p95 {p95_c:.4g} s above {limit:.4g} s (p = {p_value:.2g})",
                           details)
    return CheckResult("latency_p95", "hold", p95_c, limit, n, LATENCY_TEST,
                       f"p95 {p95_c:.4g} s above {limit:.4g} s, not yet significant "
                       f"(p = {p_value:.2g})", details)


def _scores(c: CanaryWindow, p: CanaryWindow, t: CanaryThresholds) -> CheckResult:
    held = _too_few("score_psi", c.scores, p.scores, t, t.psi_critical, PSI_TEST, "scores")
    if held is not None:
        return held
    edges = quantile_edges(p.scores, t.psi_bins)
    value = psi(bin_shares(p.scores, edges), bin_shares(c.scores, edges))
    details: dict[str, float | int | None] = {"n_production": len(p.scores),
                                              "bins": distinct_bins(edges)}
    if value >= t.psi_critical:
        return CheckResult("score_psi", "fail", value, t.psi_critical, len(c.scores), PSI_TEST,
                           f"PSI {value:.3f} at or above {t.psi_critical:g}", details)
    return CheckResult("score_psi", "pass", value, t.psi_critical, len(c.scores), PSI_TEST,
                       f"PSI {value:.3f} below {t.psi_critical:g}", details)


def analyse(candidate: CanaryWindow, production: CanaryWindow,
            thresholds: CanaryThresholds = DEFAULT_THRESHOLDS) -> Analysis:
    """Judge the candidate against production over the same period: ``fail`` on a clear
    breach, ``pass`` when every check passes on enough samples, ``hold`` otherwise."""
    checks = (_error_rate(candidate, production, thresholds),
              _latency(candidate, production, thresholds),
              _scores(candidate, production, thresholds))
    verdicts = {c.verdict for c in checks}
    verdict: Verdict = ("fail" if "fail" in verdicts
                        else "pass" if verdicts == {"pass"} else "hold")
    return Analysis(verdict, checks, thresholds,
                    {"candidate": candidate.describe(), "production": production.describe()})
