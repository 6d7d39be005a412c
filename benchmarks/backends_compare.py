"""Compare the backends on the same model files (run by hand; not a test).

ONNX models on ONNX Runtime (CPU) vs OpenVINO (CPU): magika's real model (batch 1 and
8) and the ONNX linear model from :mod:`appliance.testing.ov_models` (30 -> 2, batch 1
and 64). TFLite models on LiteRT vs OpenVINO: MediaPipe's short-range face detector
(batch 1) and the fully connected model from :mod:`appliance.testing.tflite_builder`
(30 -> 2, batch 1 and 64). Each model is loaded through the plugins' backend classes
with default options, i.e. what the appliance serves.

For each model, backend and batch: median and p99 latency of ``predict`` (µs), and
throughput (predicts/s) from one thread and from two threads. Then the cold import time
of each runtime and of ``appliance.cli`` (median of 3 fresh interpreters), which shows
that the CLI does not import any runtime. Prints markdown tables.

    .venv/bin/python benchmarks/backends_compare.py [--pin] [--seconds 1.0]

``--pin`` pins the process (and the import subprocesses) to CPU 0 first.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from appliance.backend import Backend, LoadedModel, ModelSource

Feed = dict[str, np.ndarray]
RUNTIMES = ("onnxruntime", "openvino", "ai_edge_litert.interpreter", "appliance.cli")


@dataclass(frozen=True)
class Workload:
    """One model file, the two backends compared on it, and inputs per batch size."""

    label: str
    path: Path
    format: str
    backends: tuple[str, str]
    feed: Callable[[int], Feed]
    batches: tuple[int, ...]


def backend(name: str) -> Backend:
    """The plugin's backend class, as the appliance instantiates it."""
    if name == "onnxruntime":
        from appliance_onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend()
    if name == "openvino":
        from appliance_openvino import OpenVINOBackend

        return OpenVINOBackend()
    from appliance_litert import LiteRTBackend

    return LiteRTBackend()


def package_file(package: str, *parts: str) -> Path | None:
    """A data file inside an installed package (found without importing it)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    return path if path.is_file() else None


def normal(name: str, features: int) -> Callable[[int], Feed]:
    return lambda n: {name: np.random.default_rng(0).standard_normal(
        (n, features)).astype(np.float32)}


def workloads(directory: Path) -> list[Workload]:
    from appliance.testing.ov_models import build_onnx_linear_model
    from appliance.testing.tflite_builder import build_fully_connected_model

    onnx_pair, tflite_pair = ("onnxruntime", "openvino"), ("litert", "openvino")
    found: list[Workload] = []
    magika = package_file("magika", "models", "standard_v3_3", "model.onnx")
    if magika:
        found.append(Workload("magika (onnx)", magika, "onnx", onnx_pair, lambda n: {
            "bytes": np.random.default_rng(0).integers(0, 257, (n, 2048), np.int32)}, (1, 8)))
    linear = build_onnx_linear_model(directory / "linear.onnx", 30, 2)
    found.append(Workload("linear 30->2 (onnx)", linear, "onnx", onnx_pair,
                          normal("x", 30), (1, 64)))
    face = package_file("mediapipe", "modules", "face_detection",
                        "face_detection_short_range.tflite")
    if face:
        found.append(Workload("face detector (tflite)", face, "tflite", tflite_pair,
                              lambda n: {"input": np.random.default_rng(0).uniform(
                                  -1, 1, (n, 128, 128, 3)).astype(np.float32)}, (1,)))
    fc = build_fully_connected_model(directory / "fc.tflite", in_features=30, out_features=2)
    found.append(Workload("fully connected 30->2 (tflite)", fc, "tflite", tflite_pair,
                          normal("x", 30), (1, 64)))
    return found


def latency_us(model: LoadedModel, feed: Feed, seconds: float) -> tuple[float, float]:
    """(median, p99) of ``predict`` in µs over ``seconds`` (at least 100 calls)."""
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(samples) < 100 or time.perf_counter() < deadline:
        start = time.perf_counter()
        model.predict(feed)
        samples.append((time.perf_counter() - start) * 1e6)
    return statistics.median(samples), float(np.percentile(samples, 99))


def throughput(model: LoadedModel, feed: Feed, threads: int, seconds: float) -> float:
    """``predict`` calls per second from ``threads`` threads calling back to back."""
    counts = [0] * threads
    barrier = threading.Barrier(threads + 1)
    stop = threading.Event()

    def worker(i: int) -> None:
        barrier.wait()
        while not stop.is_set():
            model.predict(feed)
            counts[i] += 1

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in pool:
        t.join()
    return sum(counts) / (time.perf_counter() - start)


def bench(items: list[Workload], seconds: float) -> list[str]:
    rows = ["| model | backend | batch | p50 µs | p99 µs | predicts/s, 1 thread "
            "| predicts/s, 2 threads |", "|---|---|---:|---:|---:|---:|---:|"]
    backends = {name: backend(name) for name in ("onnxruntime", "openvino", "litert")}
    for w in items:
        for name in w.backends:
            model = backends[name].load(ModelSource(w.path, w.format), options={})
            try:
                for batch in w.batches:
                    feed = w.feed(batch)
                    for _ in range(5):  # warm up (first-call allocations, resizes)
                        model.predict(feed)
                    p50, p99 = latency_us(model, feed, seconds)
                    one = throughput(model, feed, 1, seconds)
                    two = throughput(model, feed, 2, seconds)
                    rows.append(f"| {w.label} | {name} | {batch} | {p50:,.0f} | {p99:,.0f} "
                                f"| {one:,.0f} | {two:,.0f} |")
                    print(rows[-1], file=sys.stderr, flush=True)
            finally:
                model.close()
    return rows


def import_seconds(module: str, runs: int = 3) -> tuple[float, list[str]]:
    """Median import time of ``module`` in fresh interpreters, and which runtimes the
    import pulled in."""
    code = (f"import time;t=time.perf_counter();import {module};d=time.perf_counter()-t;"
            "import sys;print(d, *[r for r in ('onnxruntime','openvino','ai_edge_litert') "
            "if r in sys.modules])")
    times, loaded = [], []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, timeout=120).stdout.split()
        times.append(float(out[0]))
        loaded = out[1:]
    return statistics.median(times), loaded


def import_table() -> list[str]:
    rows = ["| import | median ms (3 fresh interpreters) | runtimes it loaded |",
            "|---|---:|---|"]
    for module in RUNTIMES:
        seconds, loaded = import_seconds(module)
        rows.append(f"| `{module}` | {seconds * 1e3:,.0f} | {', '.join(loaded) or 'none'} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pin", action="store_true", help="pin to CPU 0 first")
    parser.add_argument("--seconds", type=float, default=1.0,
                        help="time per latency / throughput measurement (default 1.0)")
    args = parser.parse_args()
    if args.pin:
        os.sched_setaffinity(0, {0})
    cpus = sorted(os.sched_getaffinity(0))
    print(f"CPUs {cpus} of {os.cpu_count()}; python {sys.version.split()[0]}; "
          f"default backend options\n")
    with tempfile.TemporaryDirectory() as tmp:
        rows = bench(workloads(Path(tmp)), args.seconds)
    print("\n".join(rows))
    print()
    print("\n".join(import_table()))


if __name__ == "__main__":
    main()
