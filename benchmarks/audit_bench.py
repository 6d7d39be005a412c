"""Audit log benchmark (not a test): request-path cost and chain throughput.

- ``record()``: cost per call on the request path, with the writer thread idle and with
  it draining concurrently (the GIL is shared); target < 5 µs.
- ``tensor_digest`` and ``observe()`` (digest + record) for a 1x30 FP32 input.
- batched appends (1000 per transaction, inference-sized bodies), records/s; target
  >= 20,000/s. Single ``append()`` latency (one fsync'd transaction each).
- the inference writer end to end: records queued as fast as possible, drained.
- ``verify`` over the whole log, records/s; target >= 100,000/s. Checkpoint time,
  export rates, bytes per record on disk.

    .venv/bin/python benchmarks/audit_bench.py [RECORDS]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.audit import (
    AuditLog,
    Entry,
    InferenceAuditor,
    export,
    make_checkpoint,
    tensor_digest,
    verify,
)

X = {"input": np.random.default_rng(0).random((1, 30), dtype=np.float32)}
Y = {"probabilities": np.array([[0.1, 0.9]], dtype=np.float32)}
DIGEST = tensor_digest(X)


def per_call_us(fn: Callable[[], object], calls: int, repeats: int = 5,
                between: Callable[[], object] | None = None) -> float:
    """Median over ``repeats`` of the mean cost of ``calls`` back-to-back calls."""
    means = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        means.append((time.perf_counter_ns() - start) / calls / 1000)
        if between is not None:
            between()
    return statistics.median(means)


def inference_body(i: int) -> dict[str, object]:
    return {"model": "breast_cancer", "version": "3", "request_id": f"req-{i:08d}",
            "input_digest": DIGEST, "output_summary": [1], "latency_ms": 0.412,
            "routing": {"backend": "onnxruntime", "instance": i % 4}}


def main(total: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        log = AuditLog(data_dir, Ed25519PrivateKey.generate())
        report: list[tuple[str, str]] = []

        # -- request path ----------------------------------------------------------------
        report.append(("tensor_digest 1x30 FP32",
                       f"{per_call_us(lambda: tensor_digest(X), 100_000):.2f} µs"))
        idle = InferenceAuditor(log, batch_window_ms=600_000, batch_size=10**9,
                                queue_max=10**9)
        idle.start()

        def rec() -> None:
            idle.record("breast_cancer", "3", "req", "alice", DIGEST, [1], 0.4)

        def observe() -> None:
            idle.observe("breast_cancer", "3", "req", "alice", X, Y, 0.4)

        # the queue is emptied between repeats (as the writer would), outside the timing
        empty = idle._queue.clear
        report.append(("record(), writer idle",
                       f"{per_call_us(rec, 100_000, between=empty):.2f} µs"))
        report.append(("observe() = digest + record",
                       f"{per_call_us(observe, 100_000, between=empty):.2f} µs"))
        idle.close()

        busy = InferenceAuditor(log, batch_window_ms=200, batch_size=1000, queue_max=10**9)
        busy.start()

        def rec_busy() -> None:
            busy.record("breast_cancer", "3", "req", "alice", DIGEST, [1], 0.4)

        started = time.perf_counter()
        cost = per_call_us(rec_busy, total // 5, repeats=5)
        queued_s = time.perf_counter() - started
        busy.flush(600)
        drained_s = time.perf_counter() - started
        busy.close()
        report.append(("record(), writer draining concurrently", f"{cost:.2f} µs"))
        report.append(("inference writer end to end",
                       f"{total} records queued in {queued_s:.2f} s, all committed after "
                       f"{drained_s:.2f} s = {total / drained_s:,.0f} records/s, "
                       f"{busy.dropped} dropped"))

        # -- appends ---------------------------------------------------------------------
        batches = [[Entry("inference", "alice", inference_body(b * 1000 + i))
                    for i in range(1000)] for b in range(total // 1000)]
        started = time.perf_counter()
        for batch in batches:
            log.append_many(batch)
        elapsed = time.perf_counter() - started
        report.append(("append_many, 1000 per transaction",
                       f"{total / elapsed:,.0f} records/s ({elapsed:.2f} s for {total})"))
        times = []
        for i in range(200):
            t0 = time.perf_counter()
            log.append("model.load", "ops", {"model": "bc", "version": str(i)})
            times.append(time.perf_counter() - t0)
        report.append(("append(), one fsync'd transaction each",
                       f"median {statistics.median(times) * 1000:.2f} ms, "
                       f"p99 {sorted(times)[int(len(times) * 0.99)] * 1000:.2f} ms"))

        # -- verification, checkpoints, export -------------------------------------------
        t0 = time.perf_counter()
        checkpoint = make_checkpoint(log)
        report.append(("make_checkpoint", f"{(time.perf_counter() - t0) * 1000:.2f} ms "
                                          f"(size {checkpoint.size})"))
        result = verify(log)
        assert result.ok, result.summary()
        report.append(("verify", f"{result.records_checked / result.elapsed_s:,.0f} records/s "
                                 f"({result.records_checked} in {result.elapsed_s:.2f} s)"))
        for fmt in ("jsonl", "cef", "syslog"):
            t0 = time.perf_counter()
            lines = sum(1 for _ in export(log, format=fmt))
            report.append((f"export {fmt}",
                           f"{lines / (time.perf_counter() - t0):,.0f} records/s"))
        log.close()
        size = sum(p.stat().st_size for p in data_dir.glob("audit.db*"))
        report.append(("on disk", f"{size / result.records_checked:.0f} bytes/record "
                                  f"({size / 2**20:.1f} MiB incl. WAL)"))

    width = max(len(name) for name, _ in report)
    for name, value in report:
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)
