"""Group-sequential boundaries from an alpha-spending function, and the sample size they need.

The z-statistics of a two-sided test looked at at information fractions
``0 < t_1 < ... < t_K <= 1`` are ``Z_k = B(t_k) / sqrt(t_k)`` for a Brownian motion ``B``
with drift ``theta`` (so ``corr(Z_i, Z_j) = sqrt(t_i / t_j)`` and ``Z`` at ``t = 1`` has
mean ``theta``; ``theta = 0`` under the null). A spending function ``alpha(t)`` says how
much of the type-I error may be used up by fraction ``t`` (Lan & DeMets 1983):

- ``"obrien-fleming"``: ``alpha(t) = 4 - 4 Phi(z_{1-alpha/4} / sqrt(t))``, the one-sided
  Lan-DeMets function at ``alpha / 2`` on each side (the two-sided convention of gsDesign,
  rpact and East; 5 equal looks at 0.05 give 4.877, 3.357, 2.680, 2.290, 2.031): almost
  nothing early, nearly the whole ``alpha`` at the end;
- ``"pocock"``: ``alpha(t) = alpha ln(1 + (e - 1) t)``: about even across the looks.

The boundary ``c_k`` of look ``k`` is the ``|z|`` whose probability of being crossed first
at look ``k`` equals ``alpha(t_k) - alpha(t_{k-1})``, so it accounts for every earlier look
and the looks may fall anywhere. That probability comes from the recursive numerical
integration of Armitage, McPherson & Rowe (1969): the sub-density of ``B(t_k)`` on the
continuation region ``(-c_k sqrt(t_k), c_k sqrt(t_k))`` is carried from look to look on a
grid. On each grid panel the density is taken as the quadratic through its edges and
midpoint, and both the Gaussian convolution to the next look and the crossing probability
are integrated in closed form against it (``Phi``, ``phi`` and their antiderivatives), so
looks however close together (a narrow increment kernel) lose no accuracy; the grid is
refined where the previous truncation leaves a sharp edge. Boundaries agree with a grid
five times finer to 2e-4, and with 100,000 simulated paths within their noise. A look
allowed less than 1e-12 of alpha gets the single-look boundary ``z_{1-increment/2}``
(beyond the recursion's precision, and it cannot matter). 100 looks take about 0.2 s;
results are cached.

:func:`sample_size` is the per-arm ``n`` of a fixed-sample two-sided z-test,
``2 sigma^2 (z_{1-alpha/2} + z_{power})^2 / effect^2``, times the design's *inflation
factor* ``(theta_K / theta_1)^2``: ``theta_K`` is the drift at which the group-sequential
test with ``K`` evenly spaced looks rejects with probability ``power`` (found by root
finding on the same recursion), ``theta_1`` that of the fixed-sample test.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from scipy import optimize, special, stats

Spending = Literal["obrien-fleming", "pocock"]
SPENDING_FUNCTIONS: tuple[str, ...] = ("obrien-fleming", "pocock")
FloatArray = NDArray[np.float64]

#: the grid covers the mean of B(t_k) +- 8 of its standard deviations (1e-15 of the mass out)
_SPAN = 8.0
#: grid panels (two nodes each) per standard deviation of B(t_k)
_PER_SD = 8.0
#: near the previous look's boundaries, panels per standard deviation of the increment
_PER_KERNEL = 2.0
#: a spending increment below this has the single-look boundary (too small to resolve)
_TINY = 1e-12
_SQRT_2PI = math.sqrt(2.0 * math.pi)


def check_alpha(alpha: float, name: str = "alpha") -> None:
    """Raise ValueError unless ``0 < alpha < 1``."""
    if not (isinstance(alpha, int | float) and 0.0 < alpha < 1.0):
        raise ValueError(f"{name} must be a probability strictly between 0 and 1, got {alpha!r}")


def _check_spending(spending: str) -> None:
    if spending not in SPENDING_FUNCTIONS:
        raise ValueError(f"spending must be one of {SPENDING_FUNCTIONS}, got {spending!r}")


def check_fractions(fractions: Sequence[float]) -> tuple[float, ...]:
    """The look fractions as a tuple; ValueError unless they rise strictly within (0, 1].

    A fraction beyond 1 is refused, not clamped: the plan spends all its alpha at ``t = 1``.
    """
    ts = tuple(float(t) for t in fractions)
    if not ts:
        raise ValueError("give at least one look fraction")
    for t in ts:
        if not 0.0 < t <= 1.0:
            raise ValueError(f"a look fraction must lie in (0, 1] (n / max_n), got {t!r}; "
                             "a look past max_n is not allowed: plan a larger max_n")
    if any(b <= a for a, b in zip(ts, ts[1:])):
        raise ValueError(f"look fractions must increase strictly, got {list(ts)}")
    return ts


def spent_alpha(t: float | FloatArray, alpha: float, spending: Spending) -> FloatArray:
    """The two-sided alpha that ``spending`` allows to be used up by fraction ``t``."""
    ts = np.asarray(t, dtype=np.float64)
    if spending == "pocock":
        return np.asarray(alpha * np.log1p((math.e - 1.0) * ts))
    with np.errstate(divide="ignore"):
        return np.asarray(4.0 * stats.norm.sf(stats.norm.isf(alpha / 4.0) / np.sqrt(ts)))


def _pdf(u: FloatArray) -> FloatArray:
    return np.asarray(np.exp(-0.5 * u * u) / _SQRT_2PI)


def _antiderivatives(v: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Antiderivatives of Phi(v), v Phi(v) and v^2 Phi(v)."""
    cdf, pdf, v2 = special.ndtr(v), _pdf(v), v * v
    return (v * cdf + pdf, 0.5 * ((v2 - 1.0) * cdf + v * pdf),
            (v2 * v * cdf + (v2 + 2.0) * pdf) / 3.0)


class _Layer:
    """The sub-density of B(t) on the continuation region, quadratic on each grid panel.

    ``nodes`` alternate panel edge, panel midpoint, edge, ...; ``density`` is at the nodes.
    """

    __slots__ = ("density", "nodes", "t")

    def __init__(self, t: float, nodes: FloatArray, density: FloatArray) -> None:
        self.t, self.nodes, self.density = t, nodes, density

    def panels(self) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
        """Each panel's edges, its centre and its quadratic A + B (x - c) + C (x - c)^2."""
        e, c, f = self.nodes[0::2], self.nodes[1::2], self.density
        fl, fm, fr = f[0:-1:2], f[1::2], f[2::2]
        hw = 0.5 * np.diff(e)
        return e, c, fm, (fr - fl) / (2.0 * hw), (fr + fl - 2.0 * fm) / (2.0 * hw * hw)


def _grid(t: float, b: float, mean: float, sigma: float, edges: Sequence[float]) -> FloatArray:
    """Panel edges and midpoints over the continuation region at ``t`` (where there is mass)."""
    sd = math.sqrt(t)
    lo, hi = max(-b, mean - _SPAN * sd), min(b, mean + _SPAN * sd)
    if hi - lo < 1e-9 * sd:
        lo, hi = lo - 5e-10 * sd, lo + 5e-10 * sd
    parts = [np.linspace(lo, hi, int(math.ceil((hi - lo) / sd * _PER_SD)) + 1)]
    if sigma * _PER_KERNEL < sd * _PER_SD:
        # the previous truncation at an edge leaves a step smoothed over ~sigma only
        for e in edges:
            a, z = max(lo, e - 6.0 * sigma), min(hi, e + 6.0 * sigma)
            if z > a:
                parts.append(np.linspace(a, z, int(math.ceil((z - a) / sigma * _PER_KERNEL)) + 1))
    cuts = np.unique(np.concatenate(parts))
    cuts = cuts[np.concatenate([np.diff(cuts) > 1e-9 * sd, [True]])]
    cuts[-1] = hi
    nodes = np.empty(2 * len(cuts) - 1)
    nodes[0::2], nodes[1::2] = cuts, 0.5 * (cuts[:-1] + cuts[1:])
    return nodes


def _first_layer(t: float, b: float, drift: float) -> _Layer:
    sd = math.sqrt(t)
    nodes = _grid(t, b, drift * t, sd, ())
    return _Layer(t, nodes, _pdf((nodes - drift * t) / sd) / sd)


def _propagate(layer: _Layer, t: float, b: float, drift: float) -> _Layer:
    """The sub-density at ``t`` of paths not stopped so far: an exact Gaussian convolution
    of the piecewise-quadratic density of the previous look."""
    e, c, qa, qb, qc = layer.panels()
    sigma, shift = math.sqrt(t - layer.t), drift * (t - layer.t)
    y = _grid(t, b, drift * t, sigma, (e[0], e[-1]))
    w = (y - shift)[:, None]
    u = (e[None, :] - w) / sigma
    pdf = _pdf(u)
    d_cdf = np.diff(special.ndtr(u), axis=1)
    d_pdf = np.diff(pdf, axis=1)
    d_upf = np.diff(u * pdf, axis=1)
    d = w - c[None, :]
    # the panel's quadratic in u = (x - w) / sigma is p0 + p1 u + p2 u^2
    p0 = qa + d * (qb + qc * d)
    p1 = sigma * (qb + 2.0 * qc * d)
    p2 = qc * sigma * sigma
    g = np.sum(p0 * d_cdf - p1 * d_pdf + p2 * (d_cdf - d_upf), axis=1)
    return _Layer(t, y, np.maximum(g, 0.0))


def _crossing(layer: _Layer | None, t: float, b: float, drift: float) -> float:
    """P(|B(t)| >= b and no earlier crossing), in closed form on each panel."""
    if not math.isfinite(b):
        return 0.0
    if layer is None:
        sd = math.sqrt(t)
        return float(special.ndtr((drift * t - b) / sd) + special.ndtr((-b - drift * t) / sd))
    e, c, qa, qb, qc = layer.panels()
    sigma, shift = math.sqrt(t - layer.t), drift * (t - layer.t)
    total = 0.0
    for sign in (1.0, -1.0):
        # P(sign * B(t) >= b | x) = Phi(v), v = (sign * (x + shift) - b) / sigma, so
        # x - c = sign * (b + sigma v) - shift - c: the quadratic is p0 + p1 v + p2 v^2
        h = _antiderivatives((sign * (e + shift) - b) / sigma)
        dd = sign * b - shift - c
        p0 = qa + dd * (qb + qc * dd)
        p1 = sign * sigma * (qb + 2.0 * qc * dd)
        p2 = qc * sigma * sigma
        total += sign * float(np.sum(p0 * np.diff(h[0]) + p1 * np.diff(h[1]) + p2 * np.diff(h[2])))
    return max(sigma * total, 0.0)


def _solve_boundary(layer: _Layer | None, t: float, increment: float) -> float:
    """The |z| whose first-crossing probability at ``t`` is ``increment``."""
    if increment <= 0.0:
        return math.inf
    if layer is None or increment < _TINY:
        # a lone look, or so little alpha that earlier looks do not matter at this precision
        return float(stats.norm.isf(increment / 2.0))
    root = optimize.brentq(lambda c: _crossing(layer, t, c * math.sqrt(t), 0.0) - increment,
                           0.0, 40.0, xtol=1e-10)
    return float(root)


@lru_cache(maxsize=256)
def _boundaries(fractions: tuple[float, ...], alpha: float, spending: Spending) -> FloatArray:
    spent = spent_alpha(np.array((0.0, *fractions)), alpha, spending)
    out = np.empty(len(fractions))
    layer: _Layer | None = None
    for k, t in enumerate(fractions):
        c = _solve_boundary(layer, t, float(spent[k + 1] - spent[k]))
        out[k] = c
        b = c * math.sqrt(t)
        layer = _first_layer(t, b, 0.0) if layer is None else _propagate(layer, t, b, 0.0)
    out.setflags(write=False)
    return out


def boundaries(fractions: Sequence[float], alpha: float = 0.05,
               spending: Spending = "obrien-fleming") -> FloatArray:
    """The two-sided ``|z|`` boundary of each look at ``fractions`` (``inf``: cannot reject).

    Deterministic: the same fractions give the same boundaries (cached, read-only array).
    """
    check_alpha(alpha)
    _check_spending(spending)
    return _boundaries(check_fractions(fractions), float(alpha), spending)


def rejection_probability(bounds: Sequence[float] | FloatArray, fractions: Sequence[float],
                          drift: float) -> float:
    """P(some ``|Z_k| >= bounds[k]``) when ``Z`` at ``t = 1`` has mean ``drift``."""
    ts = check_fractions(fractions)
    if len(bounds) != len(ts):
        raise ValueError(f"{len(bounds)} boundaries for {len(ts)} looks")
    total, layer = 0.0, None
    for c, t in zip(bounds, ts):
        b = float(c) * math.sqrt(t)
        total += _crossing(layer, t, b, drift)
        layer = _first_layer(t, b, drift) if layer is None else _propagate(layer, t, b, drift)
    return total


@lru_cache(maxsize=64)
def _inflation(alpha: float, power: float, spending: Spending | None, looks: int) -> float:
    fixed = float(stats.norm.isf(alpha / 2.0) + stats.norm.ppf(power))
    if spending is None or looks == 1:
        return 1.0
    ts = tuple(k / looks for k in range(1, looks + 1))
    bounds = _boundaries(ts, alpha, spending)
    theta = optimize.brentq(lambda d: rejection_probability(bounds, ts, d) - power,
                            fixed * 0.95, fixed * 2.0, xtol=1e-6)
    return float((theta / fixed) ** 2)


def inflation_factor(alpha: float = 0.05, power: float = 0.8,
                     spending: Spending | None = "obrien-fleming", looks: int = 100) -> float:
    """How much more maximum sample size ``looks`` evenly spaced looks need than one look
    for the same ``power`` (1.0 when ``spending`` is None: a fixed-sample test)."""
    check_alpha(alpha)
    check_alpha(power, "power")
    if spending is not None:
        _check_spending(spending)
    if not isinstance(looks, int) or looks < 1:
        raise ValueError(f"looks must be a positive whole number, got {looks!r}")
    return _inflation(float(alpha), float(power), spending, looks)


def sample_size(effect: float, variance: float, alpha: float = 0.05, power: float = 0.8,
                spending: Spending | None = "obrien-fleming", *, looks: int = 100) -> int:
    """The per-arm ``n`` (rounded up) that detects a difference of means ``effect`` with
    probability ``power`` in a two-sided test at ``alpha``, for rewards of per-observation
    ``variance`` in each arm, with ``looks`` evenly spaced looks (None: fixed sample).

    For a group-sequential plan, ``max_n`` (total across both arms) is twice this.
    """
    if not (math.isfinite(effect) and effect != 0.0):
        raise ValueError(f"effect must be a finite, non-zero difference of means, got {effect!r}")
    if not (math.isfinite(variance) and variance > 0.0):
        raise ValueError(f"variance must be positive and finite, got {variance!r}")
    inflation = inflation_factor(alpha, power, spending, looks)
    z = float(stats.norm.isf(alpha / 2.0) + stats.norm.ppf(power))
    return max(2, math.ceil(2.0 * variance * z * z * inflation / (effect * effect)))


@dataclass(frozen=True, slots=True)
class GroupSequentialLook:
    """One look of a :class:`GroupSequentialPlan`: its boundary, whether ``|z|`` crossed it,
    whether it was the plan's last (``n == max_n``), and the plan to keep for the next look."""

    fraction: float
    boundary: float
    crossed: bool
    final: bool
    plan: GroupSequentialPlan


@dataclass(frozen=True, slots=True)
class GroupSequentialPlan:
    """A two-sided group-sequential test of at most ``max_n`` samples (total across both arms).

    ``looks`` are the information fractions ``n / max_n`` of the looks taken so far: a plain
    tuple of floats, for the caller to persist (``list(plan.looks)``) and pass back. Stop at
    the first look whose boundary is crossed; a look past ``max_n`` is refused (ValueError).
    """

    alpha: float
    max_n: int
    spending: Spending = "obrien-fleming"
    looks: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        check_alpha(self.alpha)
        if isinstance(self.max_n, bool) or not isinstance(self.max_n, int) or self.max_n <= 0:
            raise ValueError(f"max_n must be a positive whole number of samples (both arms "
                             f"together), got {self.max_n!r}")
        _check_spending(self.spending)
        object.__setattr__(self, "looks", check_fractions(self.looks) if self.looks else ())

    def look(self, z: float, n: int) -> GroupSequentialLook:
        """Test ``z`` at ``n`` samples (total): the boundary, given every earlier look.

        A repeated look at the same ``n`` spends nothing and returns the same boundary.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise ValueError(f"n must be a positive whole number of samples, got {n!r}")
        if not math.isfinite(z):
            raise ValueError(f"z must be a finite number, got {z!r}")
        if n > self.max_n:
            raise ValueError(f"n={n:,} is past the plan's max_n={self.max_n:,} (fraction "
                             f"{n / self.max_n:.3f} > 1): the plan spends all its alpha at "
                             "max_n; take the final look at n = max_n, or plan a larger max_n")
        t = n / self.max_n
        if self.looks and t < self.looks[-1]:
            raise ValueError(f"n={n:,} is below the previous look's n="
                             f"{round(self.looks[-1] * self.max_n):,}: looks must go forward")
        plan = self if self.looks and t == self.looks[-1] else GroupSequentialPlan(
            self.alpha, self.max_n, self.spending, (*self.looks, t))
        c = float(boundaries(plan.looks, self.alpha, self.spending)[-1])
        return GroupSequentialLook(t, c, abs(z) >= c, t == 1.0, plan)
