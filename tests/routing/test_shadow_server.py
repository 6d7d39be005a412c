"""Shadow routes end to end, through a real server: a shadow that raises on every copy
never reaches a client, a busy box or a full queue sheds copies (counted) instead of
slowing production, and a shadow of the same model agrees on every row."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import routing_backend
from routed_box import Answer, body, onnx, routed, routed_box

from appliance.routing.reports import stored_shadow_report

SHADOW = {"policy": "shadow", "shadows": ["2"]}
#: shadow limits that never shed: every copy is compared
UNLIMITED = {"shadow_queue": 100_000, "shadow_rate_per_s": 1e9, "shadow_busy_inflight": 10_000}
#: client requests of the 10,000-request test (see its docstring)
REQUESTS = 10_000
CLIENTS = 4


def concurrently(url: str, n: int, clients: int) -> list[Answer]:
    """``n`` requests to ``m`` from ``clients`` threads, each with its own connection."""
    def run(seed: int) -> list[Answer]:
        rng = np.random.default_rng(seed)
        out = []
        with httpx.Client(base_url=url, timeout=60) as client:
            for _ in range(n // clients):
                x = tuple(float(v) for v in rng.uniform(0.1, 1.0, 2).astype(np.float32))
                out.append(Answer.of(client.post("/v2/models/m/infer", json=body(x)), x))
        return out

    with ThreadPoolExecutor(clients) as pool:
        return [a for part in pool.map(run, range(clients)) for a in part]


def test_shadow_raising_on_every_copy_never_reaches_ten_thousand_clients(tmp_path):
    """10,000 requests from 4 concurrent clients (about 12 s here: the clients and the
    server share one process, so more clients are not faster)."""
    with routed_box(tmp_path, [(onnx(tmp_path, 1), "production"),
                               (routed(tmp_path, "raise"), "shadow")],
                    routing=UNLIMITED) as box:
        assert box.put_route(SHADOW).status_code == 200

        answers = concurrently(box.url, REQUESTS, CLIENTS)
        report = box.shadow_report(REQUESTS)

    assert len(answers) == REQUESTS
    assert {(a.status, a.version, a.route) for a in answers} == {(200, "1", "production")}
    assert all(a.scaled_by(1) for a in answers)  # production's own answer, every time
    shadow = report["shadows"]["2"]
    assert shadow["errors"] == {"RuntimeError: device lost": REQUESTS}
    assert shadow["requests"] == 0 and shadow["shed"] == 0
    queue = report["queue"]
    assert (queue["offered"], queue["shed"], queue["done"]) == (REQUESTS, 0, REQUESTS)


def test_busy_box_sheds_shadow_copies_and_counts_them(tmp_path):
    # "slow" is another model whose requests hang: the box has 4 requests in flight
    with routed_box(tmp_path, [(onnx(tmp_path, 1), "production"),
                               (onnx(tmp_path, 1), "shadow")],
                    others={"slow": routed(tmp_path, "gate")},
                    routing={"shadow_busy_inflight": 4}) as box:
        assert box.put_route(SHADOW).status_code == 200
        dataplane = box.services.dataplane
        routing_backend.GATE.clear()
        with ThreadPoolExecutor(4) as pool:
            held = [pool.submit(box.infer, model="slow") for _ in range(4)]
            deadline = time.monotonic() + 30
            while dataplane.inflight < 4:
                assert time.monotonic() < deadline, dataplane.inflight
                time.sleep(0.005)

            started = time.perf_counter()
            busy = box.send(50)
            busy_s = time.perf_counter() - started
            assert all(not h.done() for h in held)  # still hanging
            routing_backend.GATE.set()
            assert {h.result().status for h in held} == {200}
        queue = box.services.dataplane.shadow.describe()
        idle = box.send(20)
        report = box.shadow_report(20)

    assert {(a.status, a.version) for a in busy + idle} == {(200, "1")}
    assert busy_s < 10  # answered at once, not after the shadow
    assert (queue["offered"], queue["shed"], queue["shed_by"]["busy"]) == (50, 50, 50)
    assert report["shadows"]["2"]["shed"] == 50
    assert report["queue"]["offered"] == 70 and report["queue"]["shed"] == 50
    assert report["shadows"]["2"]["requests"] == 20  # the idle box compared every copy


def test_full_shadow_queue_sheds_instead_of_holding_production(tmp_path):
    # version 2 hangs on every copy: the worker holds one, the queue (2) fills, the rest shed
    with routed_box(tmp_path, [(onnx(tmp_path, 1), "production"),
                               (routed(tmp_path, "gate"), "shadow")],
                    routing={"shadow_queue": 2}) as box:
        assert box.put_route(SHADOW).status_code == 200
        routing_backend.GATE.clear()
        try:
            answers = box.send(30)
            queue = box.services.dataplane.shadow.describe()
        finally:
            routing_backend.GATE.set()
        taken = queue["offered"] - queue["shed"]
        report = box.shadow_report(taken)

    assert {(a.status, a.version) for a in answers} == {(200, "1")}
    assert all(a.scaled_by(1) for a in answers)
    assert queue["offered"] == 30 and queue["queued"] <= 2
    assert taken <= 3 and queue["shed_by"]["queue-full"] == queue["shed"] >= 27
    assert report["shadows"]["2"]["shed"] == queue["shed"]
    assert report["shadows"]["2"]["requests"] == taken


def test_shadow_copies_over_the_rate_cap_are_shed(tmp_path):
    with routed_box(tmp_path, [(onnx(tmp_path, 1), "production"),
                               (onnx(tmp_path, 1), "shadow")],
                    routing={"shadow_rate_per_s": 5}) as box:
        assert box.put_route(SHADOW).status_code == 200
        started = time.monotonic()
        answers = box.send(40)
        seconds = int(time.monotonic()) - int(started) + 1  # the clock seconds it spanned
        queue = box.services.dataplane.shadow.describe()

    assert {a.status for a in answers} == {200}
    assert queue["shed_by"]["rate"] >= 40 - 5 * seconds
    assert queue["shed_by"]["rate"] == queue["shed"] == 40 - queue["done"] - queue["queued"]


def test_shadow_of_the_same_model_agrees_on_every_row(tmp_path):
    with routed_box(tmp_path, [(onnx(tmp_path, 1), "production"),
                               (onnx(tmp_path, 1), "shadow")], routing=UNLIMITED) as box:
        assert box.put_route(SHADOW).status_code == 200
        answers = box.send(200)
        report = box.shadow_report(200)
        box.tick()  # the routing thread stores the report for commands without a server
        stored = stored_shadow_report(box.services.registry, "m")

    assert {(a.status, a.version) for a in answers} == {(200, "1")}
    shadow = report["shadows"]["2"]
    assert shadow["requests"] == 200 and shadow["rows"] == 200
    assert shadow["agreement"] == 1.0 and shadow["max_abs_diff"] == 0.0
    assert shadow["errors"] == {} and shadow["shed"] == 0
    assert report["baseline"] == "1"
    assert stored["shadows"]["2"]["agreement"] == 1.0


def test_shadow_report_of_a_model_without_shadows_is_404(tmp_path):
    with routed_box(tmp_path, [(onnx(tmp_path, 1), "production")]) as box:
        assert box.http.get("/v1/routes/m/shadow-report").status_code == 404

