"""What an operator asks of a staged rollout, checked before anything is stored.

    {"model": "scale", "version": "2", "stage": "production",
     "groups": ["clinics"], "percent": 100,          # share of the groups' boxes targeted
     "waves": [1, 5, 25, 100],                       # cumulative % of the target, or
     "exponential": {"base_per_minute": 10, "factor": 2, "max_per_minute": 1000},
     "success_pct": 90, "soak_s": 0,                 # to advance a wave
     "abort": {"min_executed": 10, "threshold_pct": 10,
               "failure_types": ["install_failed", "warmup_failed", "error_rate", "drift",
                                 "timed_out"],
               "max_error_rate": 0.05, "min_requests": 100},
     "timeout_s": 3600, "approval": false}

**Waves.** Explicit waves are cumulative percentages of the target, strictly increasing,
ending at 100. Exponential waves (Greengrass's rollout rate) take in
``base_per_minute × factor^k`` more boxes in wave ``k``, at most ``max_per_minute``, one
wave a minute at the fastest (``soak_s`` defaults to 60 for them). Either way a wave takes
in at least one box more than the one before while boxes remain, so a small fleet's
1 % wave is one box, not none.

**Advance** (hawkBit's success threshold): every box taken in so far, at least
``success_pct`` % of them installed and healthy, and the wave ``soak_s`` old.

**Halt** (AWS IoT Jobs' abort criteria): once ``min_executed`` boxes finished (succeeded
or failed), failures of the listed types reaching ``threshold_pct`` % of them halt the
rollout. ``error_rate``: a box's production failure share on the new version reaching
``max_error_rate`` over at least ``min_requests`` requests; ``drift``: the box reports a
critical input drift on the model; ``timed_out``: not done within ``timeout_s`` of being
taken in.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from ..errors import BadRequest

FAILURE_TYPES = ("install_failed", "warmup_failed", "error_rate", "drift", "timed_out")
DEFAULT_WAVES = (1.0, 5.0, 25.0, 100.0)
MAX_WAVES = 100

_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class Exponential(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    base_per_minute: int = 10
    factor: float = 2.0
    max_per_minute: int = 1000


class Abort(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    min_executed: int = 10
    threshold_pct: float = 10.0
    failure_types: list[str] = msgspec.field(default_factory=lambda: list(FAILURE_TYPES))
    max_error_rate: float = 0.05
    min_requests: int = 100


class RolloutSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A rollout request (module docstring); :func:`check_spec` validates it."""

    model: _Name
    version: _Name
    groups: list[_Name]
    stage: str = "production"
    percent: float = 100.0
    waves: list[float] | None = None
    exponential: Exponential | None = None
    success_pct: float = 90.0
    soak_s: float | None = None
    abort: Abort = msgspec.field(default_factory=Abort)
    timeout_s: int = 3600
    approval: bool = False

    def plan(self) -> dict[str, Any]:
        """The wave plan as stored."""
        if self.exponential is not None:
            return {"kind": "exponential", **msgspec.structs.asdict(self.exponential)}
        return {"kind": "explicit", "waves": list(self.waves or DEFAULT_WAVES)}

    def success(self) -> dict[str, Any]:
        soak = self.soak_s if self.soak_s is not None else (
            60.0 if self.exponential is not None else 0.0)
        return {"pct": self.success_pct, "soak_s": soak}


def _pct(name: str, value: float, *, low_open: bool = True) -> None:
    ok = (0 < value <= 100) if low_open else (0 <= value <= 100)
    if not ok:
        raise BadRequest(f"{name} = {value}: a percentage from {'above ' if low_open else ''}"
                         "0 to 100")


def check_spec(spec: RolloutSpec) -> RolloutSpec:
    """BadRequest (400) naming the field for every value out of range."""
    from .rollout import ASSIGNABLE_STAGES

    if spec.stage not in ASSIGNABLE_STAGES:
        raise BadRequest(f"stage {spec.stage!r} cannot be rolled out; use one of "
                         f"{', '.join(ASSIGNABLE_STAGES)}")
    if not spec.groups or len(spec.groups) > 1000 or len(set(spec.groups)) != len(spec.groups):
        raise BadRequest("groups: one or more distinct group names (at most 1000)")
    _pct("percent", spec.percent)
    _pct("success_pct", spec.success_pct)
    if spec.waves is not None and spec.exponential is not None:
        raise BadRequest("give either waves (explicit percentages) or exponential, not both")
    if spec.waves is not None:
        if not 1 <= len(spec.waves) <= MAX_WAVES:
            raise BadRequest(f"waves: 1 to {MAX_WAVES} cumulative percentages")
        for wave in spec.waves:
            _pct("a wave", wave)
        if any(b <= a for a, b in zip(spec.waves, spec.waves[1:])):
            raise BadRequest(f"waves {spec.waves}: cumulative percentages must increase")
        if spec.waves[-1] != 100:
            raise BadRequest(f"waves {spec.waves}: the last wave must be 100 (use percent to "
                             "target only part of the groups)")
    if spec.exponential is not None:
        e = spec.exponential
        if e.base_per_minute < 1 or e.factor < 1 or e.max_per_minute < e.base_per_minute:
            raise BadRequest("exponential: base_per_minute >= 1, factor >= 1 and "
                             "max_per_minute >= base_per_minute")
    if spec.soak_s is not None and not 0 <= spec.soak_s <= 7 * 86400:
        raise BadRequest(f"soak_s = {spec.soak_s}: 0 to 604800 seconds")
    a = spec.abort
    if a.min_executed < 1:
        raise BadRequest(f"abort.min_executed = {a.min_executed}: at least 1")
    _pct("abort.threshold_pct", a.threshold_pct)
    unknown = sorted(set(a.failure_types) - set(FAILURE_TYPES))
    if unknown or not a.failure_types:
        raise BadRequest(f"abort.failure_types: one or more of {', '.join(FAILURE_TYPES)}"
                         + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
    if not 0 < a.max_error_rate <= 1:
        raise BadRequest(f"abort.max_error_rate = {a.max_error_rate}: a share above 0, at "
                         "most 1")
    if a.min_requests < 1:
        raise BadRequest(f"abort.min_requests = {a.min_requests}: at least 1")
    if not 1 <= spec.timeout_s <= 30 * 86400:
        raise BadRequest(f"timeout_s = {spec.timeout_s}: 1 to 2592000 seconds")
    return spec


def wave_targets(plan: dict[str, Any], target_size: int) -> list[int]:
    """The cumulative number of boxes each wave takes in, for a target of
    ``target_size`` boxes (each wave at least one more than the last, while any remain)."""
    counts: list[int] = []
    taken = 0
    if plan["kind"] == "exponential":
        k = 0
        while taken < target_size and k < 10_000:
            step = min(plan["max_per_minute"],
                       max(1, int(plan["base_per_minute"] * plan["factor"] ** min(k, 64))))
            taken = min(target_size, taken + step)
            counts.append(taken)
            k += 1
        return counts or [0]
    for pct in plan["waves"]:
        want = -(-int(round(pct * target_size * 1000)) // 100_000)  # ceil(pct% of size)
        taken = min(target_size, max(want, taken + 1))
        counts.append(taken)
    return counts
