"""The monitor on a controllable clock: capture a reference from the first production
rows, evaluate windows, keep history; the same traffic gives bit-identical results; test
traffic is not sampled; the reservoir keeps fixed memory."""

from __future__ import annotations

import json

import numpy as np

from appliance.drift import DriftMonitor, DriftSettings
from appliance.signature import TensorSpec

INPUTS = [TensorSpec("input", "FP32", (-1, 30))]
OUTPUTS = [TensorSpec("label", "INT64", (-1,)), TensorSpec("probabilities", "FP32", (-1, 2))]


def _signature(model, version):
    return INPUTS, OUTPUTS


def _outputs(rows):
    p = 1.0 / (1.0 + np.exp(-(rows[:, 0] - 14.0)))
    probs = np.stack([1 - p, p], axis=1).astype(np.float32)
    return {"label": probs.argmax(axis=1), "probabilities": probs}


def _monitor(tmp_path, clock, **settings):
    base = {"capture_rows": 569, "min_window": 100, "reservoir_rows": 512}
    return DriftMonitor(DriftSettings(**{**base, **settings}), tmp_path,
                        signature_of=_signature, clock=clock)


def _feed(monitor, rows, batch=25, traffic="production"):
    for i in range(0, len(rows), batch):
        chunk = rows[i:i + batch].astype(np.float32)
        monitor.observe("m", "1", None, {"input": chunk}, _outputs(chunk), traffic)


def _run(tmp_path, clock, cancer):
    monitor = _monitor(tmp_path, clock)
    _feed(monitor, cancer)
    clock.advance(300)
    assert monitor.tick() == []  # the capture window becomes the reference
    rng = np.random.default_rng(7)
    for scale in (1.0, 1.0, 1.5):
        rows = cancer[rng.integers(0, len(cancer), 2000)] * [scale] + [0.0]
        _feed(monitor, rows)
        clock.advance(300)
        monitor.tick()
    return monitor


def test_the_reference_is_captured_from_the_first_production_rows(tmp_path, clock, cancer):
    monitor = _monitor(tmp_path, clock)
    _feed(monitor, cancer[:300])
    assert monitor.sampling("m")["capturing"] == {"rows": 300, "of": 569}
    _feed(monitor, cancer[300:])
    monitor.tick()
    reference = monitor.store.reference("m")
    assert reference is not None and reference.source == "capture"
    assert np.array_equal(reference.sample, cancer.astype(np.float32).astype(np.float64))
    assert len(reference.prediction) == 569


def test_windows_are_evaluated_and_kept_as_history(tmp_path, clock, cancer):
    monitor = _run(tmp_path, clock, cancer)
    history = monitor.store.results("m")
    assert [r["status"] for r in history][:2] == ["no_drift", "no_drift"]
    assert history[2]["status"] == "drift" and history[2]["prediction"]["drift"]
    assert history[2]["window"] == {"start": clock.now - 300, "end": clock.now,
                                    "seen": 2000, "sampled": 512, "skipped": 0}
    assert monitor.breaches() == [{"model": "m", "status": "drift",
                                   "features": history[2]["drifted"], "prediction": True,
                                   "window_end": clock.now}]


def test_the_same_traffic_gives_bit_identical_results(tmp_path, clock, cancer):
    from dataclasses import replace

    first = _run(tmp_path / "a", clock, cancer).store.results("m")
    second = _run(tmp_path / "b", replace(clock, now=clock.now - 1200), cancer).store.results("m")
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)


def test_tagged_test_traffic_is_not_sampled(tmp_path, clock, cancer):
    monitor = _monitor(tmp_path, clock)
    _feed(monitor, cancer, traffic="test")
    assert monitor.sampling("m")["active"] is False


def test_the_reservoir_keeps_fixed_memory_whatever_the_traffic(tmp_path, clock, cancer):
    monitor = _monitor(tmp_path, clock, capture_rows=10)
    _feed(monitor, cancer[:10])
    monitor.tick()
    sampler = monitor._samplers["m"]
    before = sampler.block.nbytes
    _feed(monitor, np.tile(cancer, (20, 1)), batch=50)
    assert sampler.block.nbytes == before == 512 * 31 * 8
    assert sampler.count == 20 * 569
    window = sampler.take()
    assert window.rows.shape == (512, 30) and window.seen == 20 * 569


def test_the_cli_shows_status_and_history_as_json(tmp_path, clock, cancer):
    from click.testing import CliRunner

    from appliance.cli import main

    _run(tmp_path, clock, cancer)
    runner = CliRunner()
    status = runner.invoke(main, ["drift", "status", "m", "--data-dir", str(tmp_path),
                                  "--json"])
    assert status.exit_code == 0, status.output
    assert json.loads(status.output)["status"] == "drift"
    history = runner.invoke(main, ["drift", "history", "m", "--data-dir", str(tmp_path),
                                   "--json"])
    assert [w["status"] for w in json.loads(history.output)] == ["no_drift", "no_drift",
                                                                 "drift"]
    text = runner.invoke(main, ["drift", "history", "m", "--data-dir", str(tmp_path)])
    assert text.exit_code == 0 and "drift" in text.output
    missing = runner.invoke(main, ["drift", "status", "nope", "--data-dir", str(tmp_path),
                                   "--json"])
    assert missing.exit_code == 1 and "no drift results" in json.loads(missing.output)["error"]
