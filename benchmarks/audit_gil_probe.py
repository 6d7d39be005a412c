"""How long the audit writer makes a request thread wait for the GIL (not a test).

A probe thread sleeps 0.5 ms and measures how late it wakes (its "GIL wait") while the
main thread queues inference records at a steady rate (bursts each millisecond, sleeping
in between as a server waits in epoll) and the writer thread drains them,
the way a serving thread and the writer share one interpreter. Compared: the writer
releasing the GIL every 32 records (the default) and never (``yield_every=0``: before).

    .venv/bin/python benchmarks/audit_gil_probe.py [RATE_PER_S] [SECONDS]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.audit import AuditLog, InferenceAuditor


def probe(yield_every: int, rate: float, seconds: float) -> tuple[list[float], int]:
    with tempfile.TemporaryDirectory() as tmp, \
            AuditLog(Path(tmp), Ed25519PrivateKey.generate()) as log:
        auditor = InferenceAuditor(log, yield_every=yield_every)
        auditor.start()
        lateness: list[float] = []
        done = threading.Event()

        def sleeper() -> None:
            while not done.is_set():
                t0 = time.perf_counter()
                time.sleep(0.0005)
                lateness.append((time.perf_counter() - t0 - 0.0005) * 1000)

        thread = threading.Thread(target=sleeper)
        thread.start()
        per_ms, sent = max(1, round(rate / 1000)), 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            for _ in range(per_ms):  # a burst of "requests", then wait (GIL released)
                auditor.record("bc", "1", f"r{sent}", "c", "d" * 64, [1], 0.5)
                sent += 1
            time.sleep(max(0.0, start + sent / rate - time.perf_counter()))
        done.set()
        thread.join()
        auditor.flush()
        auditor.close()
        log.close(checkpoint=False)
    return lateness, sent


def main() -> None:
    rate = float(sys.argv[1]) if len(sys.argv) > 1 else 5000
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3
    print(f"{rate:.0f} records/s for {seconds:g} s; probe thread wakes every 0.5 ms")
    for every in (0, 32):
        late, sent = probe(every, rate, seconds)
        q = statistics.quantiles(late, n=1000)
        print(f"yield_every={every:<3} probe wake-up delay p50 {statistics.median(late):6.3f} "
              f"ms  p99 {q[989]:6.3f} ms  p99.9 {q[998]:6.3f} ms  max {max(late):6.3f} ms "
              f"({sent} records)")


if __name__ == "__main__":
    main()
