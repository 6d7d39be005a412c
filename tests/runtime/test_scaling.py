"""The adaptive scaling controller: acts on sustained signals, stays in bounds, never flaps."""

from __future__ import annotations

import numpy as np

from appliance.runtime.scaling import Bounds, ScaleState, decide


def run(p95s, rate=100.0, state=None, bounds=None):
    state = state or ScaleState(instances=1, delay_us=1000)
    bounds = bounds or Bounds(target_ms=10, max_instances=3, batching=True)
    return state, [decide(state, p, rate, bounds) for p in p95s]


def test_sustained_slowness_adds_an_instance_after_two_ticks():
    state, actions = run([20, 20])
    assert actions == [None, "instances -> 2"] and state.instances == 2


def test_a_single_spike_changes_nothing():
    state, actions = run([20, 9, 20, 9, 20, 9])
    assert actions == [None] * 6 and state.instances == 1


def test_oscillating_load_near_the_target_never_flaps():
    rng = np.random.default_rng(0)
    state, actions = run(list(rng.uniform(6, 11.5, size=200)))
    assert all(a is None for a in actions)


def test_instances_stay_within_bounds_then_batch_delay_shrinks():
    state, actions = run([50] * 20)
    assert state.instances == 3
    assert state.delay_us < 1000
    assert state.delay_us >= 100


def test_quiet_period_scales_back_down_after_three_ticks_and_cooldown():
    state = ScaleState(instances=3, delay_us=1000)
    state, actions = run([2] * 12, rate=10, state=state)
    assert state.instances == 1
    changes = [i for i, a in enumerate(actions) if a]
    assert all(b - a >= 3 for a, b in zip(changes, changes[1:]))  # cool-down between changes
    assert len(state.decisions) == len(changes)


def test_too_few_samples_means_no_decision():
    state, actions = run([None, None, None])
    assert actions == [None, None, None]


def test_instance_pool_grows_and_retires_threads_without_dropping_work():
    import concurrent.futures
    import threading
    import time

    import pytest

    from appliance.runtime.pool import InstancePool

    pool = InstancePool(1, "pooltest")
    gate = threading.Event()
    try:
        pool.resize(4)
        assert pool.threads() == 4
        futures = [pool.submit(lambda i=i: (gate.wait(5), i)[1]) for i in range(8)]
        pool.resize(2)  # two stop markers queue behind the eight jobs
        gate.set()
        assert sorted(f.result(timeout=5) for f in futures) == list(range(8))
        deadline = time.monotonic() + 5
        while pool.threads() > 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert pool.threads() == 2
        failed = pool.submit(lambda: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            failed.result(timeout=5)
    finally:
        pool.close()
    with pytest.raises(RuntimeError, match="closed"):
        pool.submit(lambda: None)
    assert isinstance(failed, concurrent.futures.Future)
