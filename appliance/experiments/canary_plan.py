"""The canary's step plan: how much traffic the candidate gets, and when that changes.

A :class:`CanaryPlan` is a list of weights (the candidate's share of the model's traffic,
in per cent), strictly increasing and ending at 100, plus the analysis interval and the
minimum time each step lasts (``min_dwell_s``, one interval unless set). A
:class:`CanaryState` is where one canary stands; :meth:`CanaryPlan.advance` is the pure
transition the caller runs after each analysis (:mod:`.canary`) and stores the result of
(:meth:`CanaryState.to_dict`, a JSON dict, in SQLite):

    ============  =========================================  ===========  =============
    analysis      when                                       action       status
    ============  =========================================  ===========  =============
    ``fail``      at any step, at once (no dwell)             rollback     rolled-back
    ``pass``      dwell not yet served at this step           hold         running
    ``pass``      dwell served, not the last step             step-up      running
    ``pass``      dwell served, last step (100 %)             promote      promoting
    ``hold``      always                                      hold         running
    ============  =========================================  ===========  =============

The analysis windows run from the canary's start (:mod:`.canary` says why), so a step-up
needs no new minimum sample; the dwell is what makes every weight serve for a while. On
``rollback`` the weight is 0 and the caller moves the candidate back to shadow; on
``promote`` the caller promotes it through the lifecycle gates and then records the end
with :meth:`CanaryPlan.finish` (or :meth:`CanaryPlan.abort` when a gate refuses). A state
that is no longer ``running`` only ever gets ``hold``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, cast

if TYPE_CHECKING:
    from .canary import Analysis

__all__ = ["ACTIONS", "STATUSES", "Action", "CanaryPlan", "CanaryState", "Status"]

Action = Literal["hold", "step-up", "promote", "rollback"]
Status = Literal["running", "promoting", "rolled-back", "done"]
ACTIONS: tuple[Action, ...] = ("hold", "step-up", "promote", "rollback")
STATUSES: tuple[Status, ...] = ("running", "promoting", "rolled-back", "done")
STATE_VERSION = 1


@dataclass(frozen=True)
class CanaryState:
    """Where one canary stands: its step, the weight in force, since when, and its status."""

    step: int
    weight: float
    started_at: float
    step_started_at: float
    status: Status = "running"

    def to_dict(self) -> dict[str, Any]:
        """The state as a JSON-serialisable dict (what the caller stores)."""
        return {"version": STATE_VERSION, "step": self.step, "weight": self.weight,
                "started_at": self.started_at, "step_started_at": self.step_started_at,
                "status": self.status}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CanaryState:
        """The state :meth:`to_dict` wrote; ``ValueError`` naming what is wrong otherwise."""
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"canary state version {data.get('version')!r} is not "
                             f"{STATE_VERSION}: it was written by another release")
        missing = [k for k in ("step", "weight", "started_at", "step_started_at", "status")
                   if k not in data]
        if missing:
            raise ValueError(f"canary state lacks {', '.join(missing)}")
        if data["status"] not in STATUSES:
            raise ValueError(f"canary state status {data['status']!r} is not one of "
                             f"{', '.join(STATUSES)}")
        step = data["step"]
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"canary state step {step!r} must be an integer >= 0")
        try:
            return cls(step, float(data["weight"]), float(data["started_at"]),
                       float(data["step_started_at"]), cast(Status, data["status"]))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"canary state times and weight must be numbers: {exc}") from exc


@dataclass(frozen=True)
class CanaryPlan:
    """The weights a canary steps through, the analysis interval and the dwell per step."""

    steps: tuple[float, ...] = (5, 25, 50, 100)
    interval_s: float = 60.0
    #: the least time each step lasts before a pass moves it on (``None``: one interval)
    min_dwell_s: float | None = None

    def __post_init__(self) -> None:
        steps = tuple(float(s) for s in self.steps)
        if not steps:
            raise ValueError("canary plan needs at least one step, e.g. (5, 25, 50, 100)")
        if any(not 0 < s <= 100 for s in steps):
            raise ValueError(f"canary plan steps {steps} must be weights in (0, 100] per cent")
        if any(b <= a for a, b in zip(steps, steps[1:])):
            raise ValueError(f"canary plan steps {steps} must be strictly increasing")
        if steps[-1] != 100:
            raise ValueError(f"canary plan steps {steps} must end at 100 (full traffic)")
        if not self.interval_s > 0:
            raise ValueError(f"canary plan interval_s={self.interval_s!r} must be above 0")
        if self.min_dwell_s is not None and not self.min_dwell_s >= 0:
            raise ValueError(f"canary plan min_dwell_s={self.min_dwell_s!r} must be >= 0 "
                             "seconds (or None for one interval)")
        object.__setattr__(self, "steps", steps)

    @property
    def dwell_s(self) -> float:
        """The least time a step lasts: ``min_dwell_s``, or one interval."""
        return self.interval_s if self.min_dwell_s is None else float(self.min_dwell_s)

    def start(self, now: float) -> CanaryState:
        """A canary starting now at the first step."""
        return CanaryState(0, self.steps[0], now, now)

    def advance(self, state: CanaryState, analysis: Analysis,
                now: float) -> tuple[CanaryState, Action]:
        """The state after ``analysis`` at ``now`` and what the caller must do (a pure
        function: nothing changes until the caller stores the new state)."""
        if state.status != "running":
            return state, "hold"
        self._check(state)
        if analysis.verdict == "fail":
            return replace(state, weight=0.0, status="rolled-back"), "rollback"
        if analysis.verdict != "pass" or now - state.step_started_at < self.dwell_s:
            return state, "hold"
        if state.step == len(self.steps) - 1:
            return replace(state, status="promoting"), "promote"
        step = state.step + 1
        return replace(state, step=step, weight=self.steps[step], step_started_at=now), "step-up"

    def finish(self, state: CanaryState) -> CanaryState:
        """The state once the caller has promoted the candidate (``promoting`` -> ``done``)."""
        if state.status != "promoting":
            raise ValueError(f"canary is {state.status}, not promoting: nothing to finish")
        return replace(state, status="done")

    def abort(self, state: CanaryState) -> CanaryState:
        """The state once the caller has rolled the candidate back on its own account
        (e.g. a lifecycle gate refused the promotion): weight 0, ``rolled-back``."""
        if state.status not in ("running", "promoting"):
            raise ValueError(f"canary is {state.status}: it has already ended")
        return replace(state, weight=0.0, status="rolled-back")

    def _check(self, state: CanaryState) -> None:
        if not 0 <= state.step < len(self.steps) or state.weight != self.steps[state.step]:
            raise ValueError(f"canary state (step {state.step}, weight {state.weight}) does "
                             f"not belong to the plan with steps {self.steps}")
