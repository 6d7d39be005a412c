"""In-process cost of routing for one request (no HTTP): DataPlane.infer on the
breast-cancer model with the default route, a two-version canary route (5 %), a 70/30
weighted route (its arms recorded for rewards), a sticky route keyed on a header, and a
100 % shadow, interleaved, best of five rounds of mean µs per call; and the decision alone.

    taskset -c 0 .venv/bin/python benchmarks/routing_micro.py [BODY]   # default row1.json
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
from appliance.lifecycle.promotion import promote  # noqa: E402
from appliance.packages.importer import import_model  # noqa: E402
from appliance.plugins import get_plugin_manager  # noqa: E402
from appliance.routing import operations  # noqa: E402
from appliance.routing.policies import RouteContext  # noqa: E402
from appliance.services import build_services, load_models  # noqa: E402
from appliance.settings import load_settings  # noqa: E402

N = 4000
ROUTES = {
    "default": None,
    "canary 5 %": {"policy": "canary", "candidate": "2", "interval_s": 86400},
    "weighted 70/30": {"policy": "weighted", "weights": {"1": 70, "3": 30}},
    "sticky (header)": {"policy": "sticky", "weights": {"1": 70, "3": 30},
                        "sticky": {"header": "X-User-Id"}},
    "shadow 100 %": {"policy": "shadow", "shadows": ["4"]},
}


def main() -> None:
    body_path = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/bench/assets/bodies/row1.json")
    body = body_path.read_bytes()
    headers = [(b"x-user-id", b"user-12345")]
    with tempfile.TemporaryDirectory() as d:
        settings = load_settings({"data_dir": Path(d), "scheduler": False,
                                  "signing_policy": {},
                                  "routing": {"shadow_rate_per_s": 1e9}}, environ={})
        services = build_services(settings, pm=get_plugin_manager(
            autoload=False, extra=(appliance_onnxruntime,)))
        # one model per route, each with the same four versions (1 production, 2 canary,
        # 3 deprecated, 4 shadow)
        names = {}
        for i, label in enumerate(ROUTES):
            name = names[label] = f"bc{i}"
            for _ in range(4):
                import_model(services.registry, services.catalog, BREAST_CANCER, name=name)
            for version, stage in (("3", "production"), ("3", "deprecated"), ("1", "production"),
                                   ("2", "canary"), ("4", "shadow")):
                promote(services.registry, settings, name, version, stage, actor="bench")
        load_models(services, watch=False)
        for label, route in ROUTES.items():
            if route is not None:
                operations.put(services.registry, names[label], route, actor="bench")
        services.repository.refresh()
        plane = services.dataplane
        loop = asyncio.new_event_loop()

        async def many(name: str, n: int) -> float:
            t0 = time.perf_counter_ns()
            for _ in range(n):
                await plane.infer(name, None, body, content_type="application/json",
                                  headers_in=headers)
            return (time.perf_counter_ns() - t0) / n / 1000

        for name in names.values():
            loop.run_until_complete(many(name, 500))
        rounds: dict[str, list[float]] = {label: [] for label in ROUTES}
        for _ in range(5):
            for label, name in names.items():
                rounds[label].append(loop.run_until_complete(many(name, N)))
                if services.routing is not None:
                    services.routing.tick()  # flush rewards, drain like the thread would
        base = min(rounds["default"])
        print(f"{body_path.name}: DataPlane.infer, best of 5 x {N} calls")
        for label, values in rounds.items():
            best = min(values)
            print(f"  {label:<18} {best:7.2f} us   +{best - base:5.2f} us   "
                  f"{base / best:5.3f}x of default")
        for label, name in names.items():
            policy = services.repository.route_of(name)
            ctx = RouteContext(headers, None, None)
            samples = []
            for _ in range(20000):
                t0 = time.perf_counter_ns()
                policy.decide(ctx) if policy.stored else policy.decide()
                samples.append(time.perf_counter_ns() - t0)
            print(f"  decide() {label:<18} {statistics.median(samples) / 1000:6.2f} us median")
        if plane.shadow is not None:
            print("  shadow queue:", plane.shadow.describe())
        services.close()


if __name__ == "__main__":
    main()
