"""The experiment report: ``appliance experiments report MODEL`` and
``GET /v1/experiments/{model}``.

A weighted, sticky or bandit route is an experiment: every answered production request's
arm is kept in ``rewards.db`` and ``POST /v1/feedback`` joins its reward. The report shows
per arm the assignments, rewards, errors and the mean reward (a conversion rate for
binary rewards) with its interval, and for every arm against the control (the route's
``baseline``, else the production version, else the first arm) one sequential decision
(:func:`appliance.experiments.sequential.decide`):

* with ``max_samples`` on the route (per arm), a group-sequential test that spends alpha
  over the looks (O'Brien-Fleming-like), its looks kept in the route's state;
* without, an always-valid mSPRT, its state (mixture variance, running p-value and
  confidence sequence) kept likewise.

Each report is a look; looks are safe to take as often as the operator likes. The
verdict is ``significant``, ``not-yet`` or ``needs-more`` with about how many more
samples and how long at the current traffic.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from ..errors import NotFound
from ..experiments.bandit import ArmState
from ..experiments.rewards import RewardStore
from ..experiments.sequential import ArmStats, GroupSequentialPlan, MsprtState, decide
from ..lifecycle.promotion import current_production
from ..registry import Registry
from .spec import RouteSpec, routed_versions
from .store import StoredRoute, get_route, save_state, state_of

__all__ = ["EXPERIMENT_POLICIES", "experiment_report"]

EXPERIMENT_POLICIES = ("weighted", "sticky", "bandit")
ALPHA = 0.05


def _control(registry: Registry, model: str, spec: RouteSpec, arms: list[str]) -> str:
    if spec.baseline in arms:
        return spec.baseline
    production = current_production(registry, model)
    if production is not None and production.version in arms:
        return production.version
    return arms[0]


def _stats(state: ArmState) -> ArmStats:
    # defaulted rewards count as observations; errors carry no reward
    return ArmStats(state.rewards, state.reward_sum, max(state.reward_sum_sq, 0.0))


def _arm(state: ArmState, binary: bool) -> dict[str, Any]:
    stats = _stats(state)
    lo, hi = stats.interval(ALPHA, binary=binary) if stats.n else (None, None)
    return {"assignments": state.assignments, "rewards": state.rewards,
            "errors": state.errors, "error_rate": state.error_rate,
            "mean": None if not stats.n else stats.mean,
            "interval": None if lo is None or not math.isfinite(lo) else [lo, hi]}


def _state_of(spec: RouteSpec, saved: dict[str, Any] | None
              ) -> GroupSequentialPlan | MsprtState:
    if spec.max_samples:
        looks = tuple(saved.get("looks", ())) if saved else ()
        return GroupSequentialPlan(ALPHA, 2 * spec.max_samples, looks=looks)
    if saved and "tau2" in saved:
        return MsprtState(**saved)
    return MsprtState(ALPHA)


def _saved(state: GroupSequentialPlan | MsprtState) -> dict[str, Any]:
    if isinstance(state, GroupSequentialPlan):
        return {"looks": list(state.looks)}
    return {k: v for k, v in asdict(state).items()
            if not (isinstance(v, float) and math.isinf(v))}


def _compare(control: ArmState, treatment: ArmState, spec: RouteSpec,
             state: GroupSequentialPlan | MsprtState, rate: float | None
             ) -> tuple[dict[str, Any], GroupSequentialPlan | MsprtState]:
    a, b = _stats(control), _stats(treatment)
    if isinstance(state, GroupSequentialPlan) and a.n + b.n > state.max_n:
        return ({"verdict": "not-yet", "test": "group-sequential-obrien-fleming",
                 "message": f"the plan's max_samples ({spec.max_samples:,} per arm) is "
                            "reached: its last look was the final one (see the route's "
                            "state); raise max_samples to continue"}, state)
    decision = decide(a, b, state=state, binary=spec.reward == "binary", alpha=ALPHA,
                      rate_per_s=rate)
    out = {k: v for k, v in asdict(decision).items() if k != "state"}
    return out, decision.state


def experiment_report(registry: Registry, rewards: RewardStore, model: str, *,
                      look: bool = True) -> dict[str, Any]:
    """The report (see the module docstring). ``look``: keep this look's test state (a
    report that only reads, e.g. from a read-only registry, passes False)."""
    registry.model(model)
    route = get_route(registry.db, model)
    if route is None or route.spec.policy not in EXPERIMENT_POLICIES:
        raise NotFound(f"{model} runs no experiment: give it a weighted, sticky or bandit "
                       f"route (appliance routes set {model} ...) and send rewards to "
                       "POST /v1/feedback")
    spec = route.spec
    arms = routed_versions(spec)
    states = rewards.arm_states(model, arms)
    control = _control(registry, model, spec, arms)
    count, first, last = rewards.span(model)
    rate = (count / (last - first)) if first is not None and last and last > first else None
    saved = (state_of(registry.db, model, route.revision) or {}).get("experiment", {})
    results: dict[str, Any] = {}
    new_saved: dict[str, Any] = {}
    for arm in arms:
        if arm == control:
            continue
        result, state = _compare(states.get(control, ArmState()),
                                 states.get(arm, ArmState()), spec,
                                 _state_of(spec, saved.get(arm)), rate)
        results[arm] = result
        new_saved[arm] = _saved(state)
    if look and new_saved != saved:
        _keep(registry, route, new_saved)
    return {"model": model, "policy": spec.policy, "revision": route.revision,
            "reward": spec.reward, "control": control, "alpha": ALPHA,
            "test": "group-sequential" if spec.max_samples else "msprt",
            "max_samples": spec.max_samples, "requests_per_s": rate,
            "arms": {a: _arm(states.get(a, ArmState()), spec.reward == "binary")
                     for a in arms},
            "comparisons": results}


def _keep(registry: Registry, route: StoredRoute, saved: dict[str, Any]) -> None:
    state = dict(state_of(registry.db, route.model, route.revision) or {})
    state["experiment"] = saved
    save_state(registry.db, route.model, route.revision, state, actor="experiments")
