"""Drift benchmark (not a test): what sampling costs on the request path, what a model
costs in memory, what an evaluation costs off the path, and KS power by window size.

- ``observe()`` ns per call for a 1x30 FP32 request of the breast-cancer signature:
  steady state (reservoir full, the row not kept), a kept row, with a request id
  (the feedback map), and the mean over 1,000,000 calls (which includes every keep).
- memory per model: the reservoir block (``reservoir_rows x 31`` float64), a 30-feature
  reference (sample + bins) as stored, and per remembered request id.
- one window evaluation (30 features, KS + PSI + BH) for the default reservoir size.
- power: share of windows flagging a 0.25 sigma shift of one breast-cancer feature, and
  false alarms on resamples of the reference, by window size.

    .venv/bin/python benchmarks/drift_cost.py
"""

from __future__ import annotations

import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer

from appliance.drift import DriftMonitor, DriftSettings
from appliance.drift.config import DriftConfig, effective
from appliance.drift.evaluate import evaluate_window
from appliance.drift.reference import build_reference
from appliance.drift.sampler import Window
from appliance.signature import TensorSpec

INPUTS = [TensorSpec("input", "FP32", (-1, 30))]
OUTPUTS = [TensorSpec("label", "INT64", (-1,)), TensorSpec("probabilities", "FP32", (-1, 2))]
FEATURES = tuple(f"input[{j}]" for j in range(30))


def _ns(fn, n: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - start) / n


def observe_cost(data: Path) -> None:
    monitor = DriftMonitor(DriftSettings(capture_rows=10), data,
                           signature_of=lambda m, v: (INPUTS, OUTPUTS))
    arrays = {"input": np.ones((1, 30), np.float32)}
    outputs = {"label": np.array([1]), "probabilities": np.array([[0.2, 0.8]], np.float32)}
    for _ in range(20):
        monitor.observe("m", "1", None, arrays, outputs)
    monitor.tick()  # the capture becomes the reference
    for _ in range(200_000):  # past the fill phase: Algorithm L keeps few rows
        monitor.observe("m", "1", None, arrays, outputs)
    sampler = monitor._samplers["m"]
    steady = _ns(lambda: monitor.observe("m", "1", None, arrays, outputs), 200_000)

    def keep_one() -> None:
        sampler.next_keep = sampler.count  # this row is the next one kept
        monitor.observe("m", "1", None, arrays, outputs)

    kept = _ns(keep_one, 20_000)
    ids = iter(range(10**9))
    with_id = _ns(lambda: monitor.observe("m", "1", str(next(ids)), arrays, outputs), 200_000)
    monitor.tick()
    mean = _ns(lambda: monitor.observe("m", "1", None, arrays, outputs), 1_000_000)
    print(f"observe, row not kept (steady state):      {steady:8.0f} ns")
    print(f"observe that keeps the row (slot copy):    {kept:8.0f} ns")
    print(f"observe with a request id (feedback map):  {with_id:8.0f} ns")
    print(f"observe mean over 1,000,000 calls (window of 1e6 rows, every keep): {mean:.0f} ns")
    print(f"reservoir block per model: {sampler.block.nbytes / 1024:.0f} KiB "
          f"({sampler.capacity} rows x {sampler.width + 1} float64)")
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(100_000):
        monitor.observe("m", "1", f"req-{i:08d}", arrays, outputs)
    per_id = (tracemalloc.get_traced_memory()[0] - before) / 100_000
    tracemalloc.stop()
    print(f"memory per remembered request id: {per_id:.0f} B "
          f"(x feedback_capacity {monitor.settings.feedback_capacity:,} = "
          f"{per_id * monitor.settings.feedback_capacity / 2**20:.0f} MiB at most)")


def reference_cost(cancer: np.ndarray) -> None:
    reference = build_reference(FEATURES, cancer, np.zeros(0), bins=10, source="bench")
    arrays = reference.sample.nbytes + reference.edges.nbytes + reference.shares.nbytes
    print(f"30-feature reference of {reference.rows} rows: {arrays / 1024:.0f} KiB in memory, "
          f"{len(reference.to_bytes()) / 1024:.0f} KiB stored")
    rng = np.random.default_rng(0)
    window = cancer[rng.integers(0, len(cancer), 2048)]
    eff = effective(DriftSettings(), DriftConfig())
    w = Window(window, np.full(len(window), np.nan), len(window), 0)
    start = time.perf_counter()
    for _ in range(20):
        evaluate_window(reference, w, eff, start=0, end=1)
    print(f"one window evaluation (2048 rows, 30 features): "
          f"{(time.perf_counter() - start) / 20 * 1000:.1f} ms (off the request path)")


def power(cancer: np.ndarray, trials: int) -> None:
    reference = build_reference(FEATURES, cancer, np.zeros(0), bins=10, source="bench")
    eff = effective(DriftSettings(min_window=10), DriftConfig())
    rng = np.random.default_rng(1)
    sigma = cancer[:, 1].std()
    print(f"window rows | flags 0.25 sigma shift of mean texture | false alarms "
          f"(resamples; {trials} windows each)")
    for m in (100, 250, 500, 1000, 2048):
        hits = alarms = 0
        for _ in range(trials):
            rows = cancer[rng.integers(0, len(cancer), m)]
            alarms += evaluate_window(reference, Window(rows, rows[:, 0] * np.nan, m, 0),
                                      eff, start=0, end=1)["drift"]
            shifted = rows.copy()
            shifted[:, 1] += 0.25 * sigma
            hits += evaluate_window(reference, Window(shifted, rows[:, 0] * np.nan, m, 0),
                                    eff, start=0, end=1)["drift"]
        print(f"{m:>11} | {hits / trials:>37.0%} | {alarms / trials:.1%}")


def main() -> None:
    trials = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    cancer = np.asarray(load_breast_cancer().data, dtype=np.float64)
    with tempfile.TemporaryDirectory() as tmp:
        observe_cost(Path(tmp))
    reference_cost(cancer)
    power(cancer, trials)


if __name__ == "__main__":
    main()
