"""Latency of ONNX Runtime on the CPU vs on CUDA for two demo-sized models (not a test).

Times ``LoadedModel.predict`` (host arrays in and out, so CUDA includes its copies) for
the breast-cancer demo model (FP32 [N, 30]) and a magika-sized model (INT32 [N, 2048] ->
FP32 [N, 214]: magika's own model when the ``magika`` package is installed, otherwise a
synthetic one of similar size built with ``onnx``), at batch 1 and 64. Prints median and
p99 in microseconds (each case stops after about ``--budget-s`` seconds); where CUDA is
unavailable it says why and still times the CPU.

    python benchmarks/cuda_vs_cpu.py [--runs N] [--budget-s S] [--tensorrt] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [p for p in (str(ROOT), str(ROOT / "plugins")) if p not in sys.path]

import numpy as np  # noqa: E402
from appliance_onnxruntime import OnnxRuntimeBackend  # noqa: E402
from appliance_onnxruntime_cuda import OnnxRuntimeCudaBackend  # noqa: E402

from appliance.backend import Backend, LoadedModel, ModelSource  # noqa: E402
from appliance.demo import BREAST_CANCER, magika_model_dir  # noqa: E402

BATCHES = (1, 64)
Feed = Callable[[int], dict[str, np.ndarray]]


def synthetic_magika(path: Path) -> Path:
    """A model shaped like magika's (about 0.8 M parameters): byte embedding, a dense
    layer over groups of 8 positions, max-pool over the sequence, a 214-way softmax."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def init(name: str, *shape: int) -> Any:
        return numpy_helper.from_array((0.05 * rng.standard_normal(shape)).astype(np.float32),
                                       name)

    nodes = [
        helper.make_node("Gather", ["emb", "bytes"], ["e"]),           # [N, 2048, 32]
        helper.make_node("Reshape", ["e", "shape"], ["g"]),            # [N, 256, 256]
        helper.make_node("MatMul", ["g", "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h"]),                       # [N, 256, 512]
        helper.make_node("ReduceMax", ["h", "axes"], ["p"], keepdims=0),  # [N, 512]
        helper.make_node("MatMul", ["p", "w2"], ["z0"]),
        helper.make_node("Add", ["z0", "b2"], ["z"]),
        helper.make_node("Softmax", ["z"], ["target_label"], axis=-1),
    ]
    inits = [init("emb", 257, 32), init("w1", 256, 512), init("b1", 512),
             init("w2", 512, 214), init("b2", 214),
             numpy_helper.from_array(np.array([-1, 256, 256], dtype=np.int64), "shape"),
             numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")]
    graph = helper.make_graph(
        nodes, "magika_sized",
        [helper.make_tensor_value_info("bytes", TensorProto.INT32, ["N", 2048])],
        [helper.make_tensor_value_info("target_label", TensorProto.FLOAT, ["N", 214])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def models(workdir: Path) -> list[tuple[str, Path, Feed]]:
    """(label, model file, batch -> inputs) for each model this install can time."""
    rng = np.random.default_rng(1)
    found: list[tuple[str, Path, Feed]] = [(
        "breast_cancer", BREAST_CANCER,
        lambda b: {"input": rng.standard_normal((b, 30)).astype(np.float32)})]
    magika = magika_model_dir()
    try:
        path, label = ((magika / "model.onnx", "magika") if magika is not None else
                       (synthetic_magika(workdir / "magika_sized.onnx"), "magika-sized"))
    except ImportError as exc:
        print(f"magika-sized model skipped: no magika package and no onnx ({exc})")
        return found
    found.append((label, path,
                  lambda b: {"bytes": rng.integers(0, 257, (b, 2048), dtype=np.int32)}))
    return found


def time_us(model: LoadedModel, feed: dict[str, np.ndarray], runs: int,
            budget_s: float) -> tuple[float, float, int]:
    """(median, p99, samples) of up to ``runs`` predicts in microseconds after a short
    warm-up, stopping early (after at least 10) once ``budget_s`` seconds are spent."""
    for _ in range(5):
        model.predict(feed)
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < runs and (len(times) < 10 or time.perf_counter() < deadline):
        start = time.perf_counter_ns()
        model.predict(feed)
        times.append((time.perf_counter_ns() - start) / 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.99 * len(times)))], len(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000, help="most timed predicts per case")
    ap.add_argument("--budget-s", type=float, default=3.0, help="time per case, roughly")
    ap.add_argument("--tensorrt", action="store_true", help="let CUDA use TensorRT too")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)

    import onnxruntime as ort

    print(f"onnxruntime {ort.__version__}; providers {ort.get_available_providers()}")
    backends: list[tuple[str, Backend, dict[str, Any]]] = [("cpu", OnnxRuntimeBackend(), {})]
    gpu = OnnxRuntimeCudaBackend()
    avail = gpu.availability()
    if avail.available:
        print(f"onnxruntime-cuda: available ({avail.reason}; {', '.join(avail.devices)})")
        backends.append(("cuda", gpu, {"tensorrt": args.tensorrt}))
    else:
        print(f"onnxruntime-cuda: unavailable ({avail.reason}); timing the CPU only")

    results: list[dict[str, Any]] = []
    print(f"\n{'model':<16}{'backend':<8}{'batch':>6}{'median us':>12}{'p99 us':>12}"
          f"{'n':>6}  providers")
    with tempfile.TemporaryDirectory() as tmp:
        for label, path, feed in models(Path(tmp)):
            for name, backend, options in backends:
                try:
                    model = backend.load(ModelSource(path, "onnx"), options=options)
                except Exception as exc:
                    print(f"{label:<16}{name:<8} load failed: {type(exc).__name__}: {exc}")
                    results.append({"model": label, "backend": name, "error": str(exc)})
                    continue
                providers = model.metadata().get("providers", [])
                for batch in BATCHES:
                    median, p99, n = time_us(model, feed(batch), args.runs, args.budget_s)
                    print(f"{label:<16}{name:<8}{batch:>6}{median:>12.1f}{p99:>12.1f}{n:>6}"
                          f"  {','.join(p.removesuffix('ExecutionProvider') for p in providers)}")
                    results.append({"model": label, "backend": name, "batch": batch,
                                    "median_us": round(median, 1), "p99_us": round(p99, 1), "n": n,
                                    "providers": providers})
                model.close()
    if args.json:
        args.json.write_text(json.dumps({"cuda": {"available": avail.available,
                                                  "reason": avail.reason,
                                                  "devices": avail.devices},
                                         "runs": args.runs, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
