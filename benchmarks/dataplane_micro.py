"""In-process cost of the appliance's own layers for one request (no HTTP).

    taskset -c 0 .venv/bin/python benchmarks/dataplane_micro.py [BODY]   # default row1.json

Times DataPlane.infer on the breast-cancer model end to end and then each step
(decode, validate, predict, encode), median µs over N calls, pinned like the server.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("APPLIANCE_DISABLE_PLUGIN_AUTOLOAD", "1")

import appliance_onnxruntime  # noqa: E402

from appliance.demo import BREAST_CANCER  # noqa: E402
from appliance.packages.importer import import_model  # noqa: E402
from appliance.plugins import get_plugin_manager  # noqa: E402
from appliance.protocol.codec import decode_request, encode_response  # noqa: E402
from appliance.services import build_services, load_models  # noqa: E402
from appliance.settings import load_settings  # noqa: E402
from appliance.validation import check_declared_inputs  # noqa: E402

N = 20000


def timeit(fn, n: int = N) -> float:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t0)
    return statistics.median(samples) / 1000


def main() -> None:
    body_path = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/bench/assets/bodies/row1.json")
    body = body_path.read_bytes()
    with tempfile.TemporaryDirectory() as d:
        settings = load_settings({"data_dir": Path(d), "scheduler": False}, environ={})
        services = build_services(settings, pm=get_plugin_manager(
            autoload=False, extra=(appliance_onnxruntime,)))
        import_model(services.registry, services.catalog, BREAST_CANCER, name="bc")
        load_models(services, watch=False)
        plane = services.dataplane
        served = services.repository.find("bc", None)
        loop = asyncio.new_event_loop()

        async def many(n: int) -> float:
            t0 = time.perf_counter_ns()
            for _ in range(n):
                await plane.infer("bc", None, body, content_type="application/json")
            return (time.perf_counter_ns() - t0) / n / 1000

        def whole() -> None:  # one call per event-loop turn would time the loop itself
            pass

        loop.run_until_complete(many(2000))
        per_call = min(loop.run_until_complete(many(N // 4)) for _ in range(3))

        request, arrays = decode_request(body, None)
        outputs = served.model.predict(arrays)
        steps = {
            "decode_request": lambda: decode_request(body, None),
            "check_declared_inputs": lambda: check_declared_inputs(
                "bc", served.inputs, request.inputs),
            "predict": lambda: served.model.predict(arrays),
            "encode_response": lambda: encode_response("bc", "1", outputs, request_id=None,
                                                       parameters=None, binary_outputs=False),
        }
        print(f"{body_path.name}: inline={served.inline}")
        print(f"  {'DataPlane.infer (all)':<24} {per_call:8.1f} us (mean, awaited in a loop)")
        for name, fn in steps.items():
            print(f"  {name:<24} {timeit(fn):8.1f} us")
        services.close()


if __name__ == "__main__":
    main()
