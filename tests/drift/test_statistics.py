"""KS, PSI and the multiple-testing correction on scikit-learn's breast-cancer features:
shifted or scaled columns are flagged, resamples of the reference are not, and KS is
scipy's ``ks_2samp`` to the bit. Seeded throughout."""

from __future__ import annotations

import numpy as np
from scipy import stats

from appliance.drift.config import DriftConfig, effective
from appliance.drift.evaluate import evaluate_window
from appliance.drift.reference import build_reference
from appliance.drift.sampler import Window
from appliance.drift.settings import DriftSettings
from appliance.drift.stats import adjust

FEATURES = tuple(f"input[{j}]" for j in range(30))
#: rows per window in these tests; with 569 reference rows, a 0.25 sigma shift of one
#: feature is flagged in ~95 % of 1,000-row windows and ~45 % of 500-row ones
WINDOW = 1000
MEAN_TEXTURE = 1


def _reference(cancer, bins=10):
    return build_reference(FEATURES, cancer, np.zeros(0), bins=bins, source="test")


def _window(rows):
    return Window(rows, np.full(len(rows), np.nan), len(rows), 0)


def _evaluate(reference, rows, **config):
    eff = effective(DriftSettings(min_window=100), DriftConfig(**config))
    return evaluate_window(reference, _window(rows), eff, start=0.0, end=1.0)


def _resample(cancer, rng, n=WINDOW):
    return cancer[rng.integers(0, len(cancer), n)].copy()


def test_ks_matches_scipy_ks_2samp_on_the_raw_windows(cancer):
    rng = np.random.default_rng(1)
    reference = _reference(cancer)
    rows = _resample(cancer, rng, 300)
    rows[:, 3] *= 1.3
    result = _evaluate(reference, rows)
    for j, name in enumerate(FEATURES):
        expected = stats.ks_2samp(cancer[:, j], rows[:, j])
        assert result["features"][name]["ks"] == float(expected.statistic)
        assert result["features"][name]["p_value"] == float(expected.pvalue)


def test_resamples_of_the_reference_alarm_in_at_most_one_percent_of_windows(cancer):
    rng = np.random.default_rng(2)
    reference = _reference(cancer)
    alarms = sum(_evaluate(reference, _resample(cancer, rng))["drift"] for _ in range(500))
    assert alarms <= 5  # 1 % of 500 windows, across all 30 features, BH-corrected


def test_a_quarter_sigma_mean_shift_on_one_feature_is_flagged_within_three_windows(cancer):
    rng = np.random.default_rng(3)
    reference = _reference(cancer)
    flagged_at = None
    for index in range(3):
        rows = _resample(cancer, rng)
        rows[:, MEAN_TEXTURE] += 0.25 * cancer[:, MEAN_TEXTURE].std()
        result = _evaluate(reference, rows)
        if result["drift"]:
            flagged_at = index
            break
    assert flagged_at is not None
    assert result["drifted"] == [FEATURES[MEAN_TEXTURE]]


def test_shifted_and_scaled_columns_are_flagged_and_the_others_are_not(cancer):
    rng = np.random.default_rng(4)
    rows = _resample(cancer, rng)
    rows[:, 0] += cancer[:, 0].std()  # mean radius: one sigma up
    rows[:, 7] *= 2.0  # mean concave points: doubled
    result = _evaluate(_reference(cancer), rows)
    assert result["status"] == "drift"
    assert set(result["drifted"]) == {"input[0]", "input[7]"}
    assert result["features"]["input[7]"]["severity"] == "critical"
    assert result["features"]["input[7]"]["psi"] >= 0.25


def test_psi_bins_are_as_many_as_asked_for(cancer):
    for bins in (4, 10, 20):
        reference = _reference(cancer, bins)
        assert reference.edges.shape == (30, bins - 1)
        assert reference.shares.shape == (30, bins)
        assert np.allclose(reference.shares.sum(axis=1), 1.0)
        assert reference.describe()["tied_bins"] == {}


def test_a_window_below_min_window_is_insufficient_data_never_drift(cancer):
    rows = cancer[:50] * 3.0
    result = _evaluate(_reference(cancer), rows)
    assert result["status"] == "insufficient_data" and result["drift"] is False
    assert "min_window=100" in result["reason"]


def test_bonferroni_adjusts_more_than_benjamini_hochberg():
    p = np.array([0.001, 0.01, 0.02, 0.5])
    bh, bonferroni = adjust(p, "bh"), adjust(p, "bonferroni")
    assert np.allclose(bonferroni, [0.004, 0.04, 0.08, 1.0])
    assert np.allclose(bh, stats.false_discovery_control(p))
    assert (bonferroni >= bh).all()


def test_a_feature_threshold_overrides_the_model_threshold(cancer):
    rng = np.random.default_rng(5)
    rows = _resample(cancer, rng)
    rows[:, 7] *= 1.3
    loose = {"input[7]": {"psi_warning": 5.0, "psi_critical": 10.0}}
    from appliance.drift.config import FeatureThresholds

    result = _evaluate(_reference(cancer), rows, alpha=1e-300,
                       features={k: FeatureThresholds(**v) for k, v in loose.items()})
    assert result["features"]["input[7]"]["severity"] == "ok"
    assert result["features"]["input[7]"]["psi"] >= 0.1
