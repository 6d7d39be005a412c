"""The KPI report: a KPI planted to follow the prediction shift two windows later is
found, at that lag, with the shifts that moved it; a KPI planted independent of the
shift is not. Windows come from a real monitor and store on a controllable clock."""

from __future__ import annotations

import numpy as np
import pytest
from test_monitor import _feed, _monitor

from appliance.drift.kpi import kpi_report
from appliance.errors import BadRequest

#: per window: how far mean radius is scaled (1.0 = no shift)
SCALES = [1.0, 1.0, 1.0, 1.3, 1.0, 1.0, 1.0, 1.1, 1.0, 1.0, 1.5, 1.0, 1.0, 1.0, 1.2,
          1.0, 1.0, 1.0, 1.0, 1.4, 1.0, 1.0, 1.0, 1.0, 1.0]
LAG = 2


@pytest.fixture
def windows(tmp_path, clock, cancer):
    """A monitor with 25 evaluated windows; the prediction PSI of each."""
    monitor = _monitor(tmp_path, clock)
    _feed(monitor, cancer)
    clock.advance(60)
    monitor.tick()
    rng = np.random.default_rng(21)
    for scale in SCALES:
        rows = cancer[rng.integers(0, len(cancer), 600)].copy()
        rows[:, 0] *= scale
        _feed(monitor, rows, batch=100)
        clock.advance(60)
        monitor.tick()
    results = monitor.store.results("m")
    return monitor, [r["prediction"]["psi"] for r in results], results


def _post_kpi(monitor, name, results, values):
    points = [(name, r["window"]["start"] + 30, float(v))
              for r, v in zip(results, values, strict=True)]
    monitor.store.add_kpis(points)


def test_a_kpi_following_the_shift_with_a_lag_is_found_at_that_lag(windows):
    monitor, psi, results = windows
    rng = np.random.default_rng(22)
    kpi = 100 + rng.normal(0, 0.5, len(psi))
    kpi[LAG:] -= 40 * np.array(psi[:-LAG])  # conversions drop two windows after a shift
    _post_kpi(monitor, "conversions", results, kpi)
    report = kpi_report(monitor.store, "m", "conversions", max_lag=3)
    assert report["correlated"] is True
    assert report["best"]["lag"] == LAG and report["best"]["rho"] < -0.5
    moved = {r["window_start"] for r in report["co_moved"]}
    shifted = {results[i]["window"]["start"] for i, s in enumerate(SCALES)
               if s >= 1.3 and i + LAG < len(SCALES)}
    assert shifted <= moved


def test_a_kpi_independent_of_the_shift_is_not_reported_as_correlated(windows):
    monitor, psi, results = windows
    rng = np.random.default_rng(23)
    _post_kpi(monitor, "weather", results, 20 + rng.normal(0, 3, len(psi)))
    report = kpi_report(monitor.store, "m", "weather", max_lag=3)
    assert report["correlated"] is False and report["co_moved"] == []
    assert "no correlation" in report["summary"]


def test_bad_kpi_points_name_their_index_and_field():
    from appliance.drift.kpi import parse_points

    with pytest.raises(BadRequest, match=r"point 2: value must be finite"):
        parse_points([("a", "2025-01-01T00:00:00Z", 1.0)] * 2
                     + [("a", "2025-01-01T00:00:00Z", float("nan"))])
    with pytest.raises(BadRequest, match=r"point 0: time: '2025-01-01' has no timezone"):
        parse_points([("a", "2025-01-01", 1.0)])
