"""Dynamic batching, instances, deadlines and admission control on a real server."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import numpy as np
import pytest
from helpers import make_services, serve
from helpers.models import scale_model

from appliance.errors import BadRequest, GatewayTimeout, ServiceUnavailable
from appliance.packages.importer import import_model
from appliance.runtime.batcher import BatchConfig, DynamicBatcher


def body(rows: np.ndarray) -> dict:
    return {"inputs": [{"name": "x", "datatype": "FP32", "shape": list(rows.shape),
                        "data": rows.ravel().tolist()}]}


@pytest.fixture
def batched(tmp_path, ort_plugin_manager):
    services = make_services(tmp_path / "var", ort_plugin_manager, models={
        "m": {"max_batch_size": 16, "max_queue_delay_us": 20000, "max_queue_size": 64,
              "instances": 2}})
    import_model(services.registry, services.catalog, scale_model(tmp_path / "m.onnx", 2),
                 name="m")
    server = serve(services)
    yield server.url, services
    server.stop()


def test_concurrent_requests_are_batched_and_each_gets_its_own_rows(batched):
    url, services = batched
    batches: list[int] = []
    execution = services.repository.find("m", None).execution
    execution.batcher.on_batch = lambda rows, seconds: batches.append(rows)
    results: dict[int, list[float]] = {}

    def call(i: int) -> None:
        rows = np.full((1 + i % 3, 2), float(i), dtype=np.float32)
        r = httpx.post(f"{url}/v2/models/m/infer", json=body(rows), timeout=30)
        assert r.status_code == 200, r.text
        results[i] = r.json()["outputs"][0]["data"]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, data in results.items():
        assert data == [2.0 * i] * (2 * (1 + i % 3)), f"request {i} got someone else's rows"
    assert max(batches) > 1, "no two requests were ever run together"
    meta = httpx.get(f"{url}/v2/models/m").json()["parameters"]
    assert meta["dynamic_batching"]["max_batch_size"] == 16 and meta["instances"] == 2


def test_batch_larger_than_max_batch_size_is_400_naming_the_limit(batched):
    url, _ = batched
    r = httpx.post(f"{url}/v2/models/m/infer", json=body(np.zeros((17, 2), np.float32)))
    assert r.status_code == 400 and "max_batch_size 16" in r.json()["error"]


def test_past_deadline_is_504_and_the_server_keeps_serving(batched):
    url, _ = batched
    r = httpx.post(f"{url}/v2/models/m/infer", json=body(np.ones((1, 2), np.float32)),
                   headers={"X-Request-Timeout-Ms": "1"})
    assert r.status_code == 504 and "deadline" in r.json()["error"]
    r = httpx.post(f"{url}/v2/models/m/infer", json=body(np.ones((1, 2), np.float32)))
    assert r.status_code == 200


def test_bad_timeout_header_is_400(batched):
    url, _ = batched
    r = httpx.post(f"{url}/v2/models/m/infer", json=body(np.ones((1, 2), np.float32)),
                   headers={"X-Request-Timeout-Ms": "soon"})
    assert r.status_code == 400 and "milliseconds" in r.json()["error"]


class SlowModel:
    """A model whose predict takes a while (stands in for a compute-bound model)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls = 0

    def predict(self, inputs):
        self.calls += 1
        time.sleep(self.seconds)
        return {"y": inputs["x"] * 2}


def test_full_queue_answers_503_with_retry_after_and_never_grows_unbounded():
    model = SlowModel(0.2)
    batcher = DynamicBatcher("slow", model.predict, BatchConfig(
        max_batch_size=2, max_queue_delay_us=100, max_queue_size=3, instances=1))

    async def scenario():
        x = np.ones((1, 2), np.float32)
        tasks = [asyncio.create_task(batcher.submit({"x": x})) for _ in range(12)]
        done = await asyncio.gather(*tasks, return_exceptions=True)
        batcher.close()
        return done

    results = asyncio.run(scenario())
    refused = [r for r in results if isinstance(r, ServiceUnavailable)]
    served = [r for r in results if isinstance(r, dict)]
    assert refused and served
    assert all(r.headers.get("Retry-After") for r in refused)
    assert all(np.array_equal(r["y"], np.full((1, 2), 2.0)) for r in served)


def test_expired_requests_are_dropped_before_compute():
    model = SlowModel(0.2)
    batcher = DynamicBatcher("slow", model.predict, BatchConfig(
        max_batch_size=1, max_queue_delay_us=0, max_queue_size=10, instances=1))

    async def scenario():
        x = np.ones((1, 2), np.float32)
        first = asyncio.create_task(batcher.submit({"x": x}))
        await asyncio.sleep(0.01)
        late = asyncio.create_task(batcher.submit({"x": x}, deadline=time.monotonic() + 0.05))
        results = await asyncio.gather(first, late, return_exceptions=True)
        batcher.close()
        return results

    first, late = asyncio.run(scenario())
    assert isinstance(first, dict) and isinstance(late, GatewayTimeout)
    assert model.calls == 1


def test_inputs_with_different_batch_dims_are_refused():
    batcher = DynamicBatcher("m", lambda i: i, BatchConfig(max_batch_size=4))

    async def scenario():
        try:
            await batcher.submit({"a": np.zeros((1, 2)), "b": np.zeros((2, 2))})
        finally:
            batcher.close()

    with pytest.raises(BadRequest, match="same first"):
        asyncio.run(scenario())


def test_autoscaler_raises_instances_when_p95_misses_the_target_and_logs_it(
        tmp_path, ort_plugin_manager):
    from appliance.runtime.scaling import ScalingController

    services = make_services(tmp_path / "var", ort_plugin_manager, models={
        "m": {"instances": 1, "autoscale": True, "p95_target_ms": 0.000001,
              "max_instances": 3}},
        inline_threshold_us=0)
    import_model(services.registry, services.catalog, scale_model(tmp_path / "m.onnx", 2),
                 name="m")
    server = serve(services)
    try:
        controller = ScalingController(services.repository)
        for _ in range(4):  # four ticks of sustained "slow" traffic
            for _ in range(25):
                r = httpx.post(f"{server.url}/v2/models/m/infer",
                               json=body(np.ones((1, 2), np.float32)))
                assert r.status_code == 200
            controller.tick()
        meta = httpx.get(f"{server.url}/v2/models/m").json()["parameters"]
        assert meta["instances"] == 2
        assert meta["autoscale"]["decisions"][0]["action"] == "instances -> 2"
    finally:
        server.stop()


def test_overload_sheds_requests_that_would_miss_their_deadline_with_503():
    from appliance.runtime.execution import Execution
    from appliance.settings import ModelServing

    class Model:
        def predict(self, inputs):
            time.sleep(0.05)
            return {"y": inputs["x"]}

    execution = Execution("slow", Model(), ModelServing(instances=1), inline=False)

    async def scenario():
        x = {"x": np.ones((1, 2), np.float32)}
        await execution.run(x)  # learn how long one predict takes
        deadline = time.monotonic() + 0.12  # room for about two predicts
        tasks = [asyncio.create_task(execution.run(x, deadline)) for _ in range(8)]
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(scenario())
    execution.close()
    shed = [r for r in results if isinstance(r, ServiceUnavailable)]
    assert shed and all("overloaded" in r.message and r.headers["Retry-After"] for r in shed)
    assert any(isinstance(r, dict) for r in results)
    assert not any(isinstance(r, GatewayTimeout) for r in results[:2])
