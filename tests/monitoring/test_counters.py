"""The request-path ring (monitoring/counters.py): folding raw samples with numpy gives
exactly what counting each request with bisect would, across ring wrap-arounds."""

from __future__ import annotations

import random
from bisect import bisect_left

import numpy as np

from appliance.monitoring.counters import RING, VersionStats


def test_folded_ring_matches_per_request_bisect_counting():
    bounds = (0.001, 0.0025, 0.005, 0.01, 0.025)
    stats = VersionStats("m", "1", bounds, (1, 2, 4, 8))
    stats.rows_input = "x"
    rng = random.Random(7)
    want_request = [0] * (len(bounds) + 1)
    want_batch = [0] * 5
    rows_total = 0
    total_s = 0.0
    n = RING * 2 + 17  # two folds from full rings, the rest at "scrape" time
    for _ in range(n):
        started = rng.random()
        before = started + rng.random() * 1e-3
        queue, compute = rng.random() * 2e-3, rng.random() * 0.02
        end = before + queue + compute + rng.random() * 1e-3
        rows = rng.choice((1, 2, 3, 8, 9))
        stats.succeeded("production", {"x": np.zeros((rows, 2))}, started, before, queue,
                        compute, end)
        want_request[bisect_left(bounds, end - started)] += 1
        want_batch[bisect_left((1, 2, 4, 8), rows)] += 1
        rows_total += rows
        total_s += end - started
    assert stats.production.ok == n  # exact before any fold
    stats.fold()
    rs = stats.production
    assert list(rs.request_b) == want_request
    assert list(stats.batch_b) == want_batch
    assert (rs.inferences, stats.rows_total, stats.executions) == (rows_total, rows_total, n)
    assert abs(rs.request_s - total_s) < 1e-9 and rs.n == 0
    assert sum(rs.queue_b) == sum(rs.compute_b) == n
