"""Shadow comparison, as appliance/routing/compare.py states it: row agreement by kind,
argmax agreement, Wilson intervals, PSI of scores, latency deltas, bounded memory."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from appliance.routing.compare import (
    PSI_MIN_SAMPLES,
    ComparisonSettings,
    ShadowComparison,
)


def probabilities(rng: np.random.Generator, rows: int, classes: int = 5) -> np.ndarray:
    return rng.dirichlet(np.ones(classes), size=rows).astype(np.float32)


def feed(comparison: ShadowComparison, production: dict[str, np.ndarray],
         shadow: dict[str, np.ndarray], batch: int = 100) -> None:
    rows = len(next(iter(production.values())))
    for start in range(0, rows, batch):
        comparison.add({k: v[start:start + batch] for k, v in production.items()},
                       {k: v[start:start + batch] for k, v in shadow.items()}, 0.010, 0.012)


def test_candidate_disagreeing_on_2_percent_of_argmax_is_reported_at_98_percent():
    rng = np.random.default_rng(7)
    rows = 10_000
    production = probabilities(rng, rows)
    shadow = production.copy()
    changed = rng.choice(rows, size=rows // 50, replace=False)
    top = shadow[changed].argmax(axis=1)
    other = (top + 1) % production.shape[1]
    # swap the top class with another: same values, different argmax
    shadow[changed, top], shadow[changed, other] = production[changed, other], \
        production[changed, top]
    comparison = ShadowComparison()
    feed(comparison, {"probabilities": production}, {"probabilities": shadow})
    report = comparison.report()
    low, high = report["argmax_agreement_interval"]
    assert report["rows"] == rows and report["argmax_rows"] == rows
    assert report["argmax_agreement"] == pytest.approx(0.980, abs=1e-9)
    assert low <= 0.98 <= high
    assert low >= 0.98 - 0.003 and high <= 0.98 + 0.003
    assert report["kind"] == "vector"


def test_quantized_shadow_within_tolerance_agrees_on_every_vector_row():
    rng = np.random.default_rng(1)
    production = probabilities(rng, 5_000)
    shadow = production + rng.uniform(-4e-4, 4e-4, production.shape).astype(np.float32)
    comparison = ShadowComparison(ComparisonSettings(tolerance=1e-3))
    feed(comparison, {"probabilities": production}, {"probabilities": shadow})
    report = comparison.report()
    assert report["agreement"] == 1.0
    assert report["agreement_interval"][0] > 0.999
    assert 0 < report["max_abs_diff"] <= 1e-3
    assert report["mean_abs_diff"] < 4e-4
    assert report["mean_cosine"] > 0.9999


def test_noise_above_tolerance_lowers_vector_agreement_and_raises_max_abs_diff():
    rng = np.random.default_rng(2)
    production = probabilities(rng, 5_000)
    noise = rng.normal(0, 2e-3, production.shape).astype(np.float32)
    small, large = ShadowComparison(), ShadowComparison()
    feed(small, {"probabilities": production}, {"probabilities": production + noise / 10})
    feed(large, {"probabilities": production}, {"probabilities": production + noise})
    assert large.report()["agreement"] < 0.5 < small.report()["agreement"]
    assert large.report()["max_abs_diff"] > 5e-3 > small.report()["max_abs_diff"]
    # the noise rarely moves the argmax of a 5-class distribution
    assert large.report()["argmax_agreement"] > 0.95


def test_cosine_mode_agrees_on_rescaled_rows_that_fail_the_abs_tolerance():
    rng = np.random.default_rng(3)
    production = rng.normal(size=(1_000, 16)).astype(np.float32)
    shadow = production * 1.5  # same direction, far in absolute terms
    shadow[:100] = rng.normal(size=(100, 16))  # unrelated embeddings
    by_cosine = ShadowComparison(ComparisonSettings(min_cosine=0.99, argmax=False))
    by_abs = ShadowComparison(ComparisonSettings(argmax=False))
    for comparison in (by_cosine, by_abs):
        feed(comparison, {"embedding": production}, {"embedding": shadow})
    assert by_cosine.report()["agreement"] == pytest.approx(0.9)
    assert by_cosine.report()["criterion"] == "cosine >= 0.99"
    assert by_abs.report()["agreement"] < 0.01
    assert by_cosine.report()["lowest_cosine"] < 0.9
    assert by_cosine.report()["argmax_agreement"] is None


def test_integer_and_string_labels_are_compared_exactly():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 10, size=2_000)
    shadow = labels.copy()
    shadow[:30] = (shadow[:30] + 1) % 10
    names = np.array(["cat", "dog"])[labels % 2]
    comparison = ShadowComparison()
    feed(comparison, {"label": labels}, {"label": shadow})
    report = comparison.report()
    assert report["agreement"] == pytest.approx(1 - 30 / 2_000)
    assert report["kind"] == "class" and report["max_abs_diff"] is None
    strings = ShadowComparison()
    feed(strings, {"name": names}, {"name": names.copy()})
    assert strings.report()["agreement"] == 1.0 and strings.report()["kind"] == "class"


def test_a_row_agrees_only_when_every_common_output_agrees():
    rng = np.random.default_rng(5)
    production = probabilities(rng, 1_000)
    labels = production.argmax(axis=1)
    wrong_labels = labels.copy()
    wrong_labels[:50] = -1
    comparison = ShadowComparison()
    feed(comparison, {"label": labels, "probabilities": production},
         {"label": wrong_labels, "probabilities": production, "extra": production})
    report = comparison.report()
    assert report["outputs"] == {"label": "class", "probabilities": "vector"}
    assert report["kind"] == "mixed"
    assert report["agreement"] == pytest.approx(0.95)
    assert report["argmax_agreement"] == 1.0


def test_forced_class_kind_compares_the_argmax_of_probabilities():
    rng = np.random.default_rng(6)
    production = probabilities(rng, 1_000)
    shadow = production + rng.normal(0, 1e-2, production.shape).astype(np.float32)
    comparison = ShadowComparison(ComparisonSettings(kind="class"))
    feed(comparison, {"probabilities": production}, {"probabilities": shadow})
    report = comparison.report()
    assert report["kind"] == "class"
    assert report["agreement"] == report["argmax_agreement"] > 0.9


def test_shape_mismatch_counts_every_row_as_disagreeing_with_its_reason():
    comparison = ShadowComparison()
    production = np.full((4, 3), 1 / 3, dtype=np.float32)
    comparison.add({"probabilities": production}, {"probabilities": production[:, :2]},
                   0.01, 0.01)
    comparison.add({"probabilities": production}, {"probabilities": production}, 0.01, 0.01)
    report = comparison.report()
    assert report["rows"] == 8 and report["mismatch_rows"] == 4
    assert report["agreement"] == 0.5 and report["argmax_agreement"] == 0.5
    assert report["mismatch_reasons"] == ["probabilities: shape (4, 3) vs shadow (4, 2)"]


def test_dtype_family_mismatch_disagrees_but_lower_precision_floats_are_compared():
    comparison = ShadowComparison(ComparisonSettings(output="label"))
    comparison.add({"label": np.array([1, 2])}, {"label": np.array([1.0, 2.0])}, 0.01, 0.01)
    assert comparison.report()["agreement"] == 0.0
    assert comparison.report()["mismatch_reasons"] == [
        "label: dtype int64 vs shadow float64"]
    half = ShadowComparison()
    scores = np.linspace(0, 1, 10, dtype=np.float32).reshape(10, 1)
    half.add({"score": scores}, {"score": scores.astype(np.float16)}, 0.01, 0.01)
    assert half.report()["agreement"] == 1.0 and half.report()["mismatch_rows"] == 0


def test_missing_outputs_are_disagreements_not_exceptions():
    named = ShadowComparison(ComparisonSettings(output="probabilities"))
    named.add({"probabilities": np.ones((3, 2))}, {"logits": np.ones((3, 2))}, 0.01, 0.01)
    assert named.report()["rows"] == 3 and named.report()["agreement"] == 0.0
    assert named.report()["mismatch_reasons"] == ["probabilities: missing from shadow"]
    disjoint = ShadowComparison()
    disjoint.add({"a": np.ones(2)}, {"b": np.ones(2)}, 0.01, 0.01)
    assert disjoint.report()["mismatch_reasons"][0].startswith("no common outputs")


def test_non_finite_shadow_values_disagree_and_keep_the_report_finite():
    production = np.array([[0.5, 0.5], [0.2, 0.8], [np.nan, 1.0]])
    shadow = np.array([[0.5, 0.5], [np.nan, 0.8], [np.nan, 1.0]])
    comparison = ShadowComparison()
    comparison.add({"p": production}, {"p": shadow}, 0.01, float("nan"))
    report = comparison.report()
    assert report["agreement"] == pytest.approx(2 / 3)
    assert report["nonfinite_rows"] == 1
    assert report["latency_delta_ms"]["mean"] is None
    json.dumps(report, allow_nan=False)


def test_scalar_empty_and_bytes_outputs_are_compared_without_raising():
    comparison = ShadowComparison()
    comparison.add({"x": np.float32(0.5)}, {"x": np.float32(0.5)}, 0.01, 0.01)
    empty = np.zeros((0, 3), dtype=np.float32)
    comparison.add({"x": empty}, {"x": empty}, 0.01, 0.01)
    comparison.add({"b": np.array([b"a", b"b"], dtype=object)},
                   {"b": np.array([b"a", b"c"], dtype=object)}, 0.01, 0.01)
    comparison.add({}, {}, 0.01, 0.01)
    report = comparison.report()
    assert report["requests"] == 4 and report["rows"] == 4
    assert report["agreement"] == 0.5 and report["mismatch_rows"] == 1


def test_shadow_errors_are_counted_by_reason_and_distinct_reasons_are_bounded():
    comparison = ShadowComparison()
    for _ in range(3):
        comparison.add_error("TimeoutError")
    for i in range(40):
        comparison.add_error(f"RuntimeError: request {i}")
    errors = comparison.report()["errors"]
    assert errors["TimeoutError"] == 3
    assert sum(errors.values()) == 43
    assert len(errors) <= 17 and errors["other"] > 0


def test_shed_copies_are_counted():
    comparison = ShadowComparison()
    for _ in range(5):
        comparison.add_shed()
    assert comparison.report()["shed"] == 5
    assert comparison.report()["requests"] == 0


def test_report_is_json_serialisable():
    rng = np.random.default_rng(8)
    production = probabilities(rng, 500)
    comparison = ShadowComparison()
    assert json.loads(json.dumps(comparison.report(), allow_nan=False))["agreement"] is None
    feed(comparison, {"label": production.argmax(axis=1), "probabilities": production},
         {"label": production.argmax(axis=1), "probabilities": production[::-1].copy()})
    comparison.add_error("boom")
    comparison.add_shed()
    text = json.dumps(comparison.report(), allow_nan=False)
    assert json.loads(text)["errors"] == {"boom": 1}


def test_psi_is_null_with_a_reason_below_the_minimum_sample():
    comparison = ShadowComparison()
    values = np.linspace(0, 1, PSI_MIN_SAMPLES - 1)
    comparison.add({"score": values}, {"score": values}, 0.01, 0.01)
    report = comparison.report()
    assert report["psi"] is None
    assert report["psi_reason"] == f"too few samples ({PSI_MIN_SAMPLES - 1} < 100)"


def test_psi_is_large_for_a_shifted_shadow_score_distribution():
    rng = np.random.default_rng(9)
    production = rng.normal(0, 1, 4_000)
    same, shifted = ShadowComparison(), ShadowComparison()
    feed(same, {"score": production}, {"score": production + rng.normal(0, 1e-4, 4_000)})
    feed(shifted, {"score": production}, {"score": production + 1.0})
    assert same.report()["psi"] < 0.01
    assert shifted.report()["psi"] > 0.25 and shifted.report()["psi_reason"] is None


def test_samples_stay_within_sample_cap_after_100k_rows():
    rng = np.random.default_rng(10)
    settings = ComparisonSettings(sample_cap=1_000)
    comparison = ShadowComparison(settings)
    production = probabilities(rng, 1_000)
    for i in range(100):
        size = 1 if i % 10 == 0 else 1_000 + i  # single rows and batches over the cap
        batch = np.resize(production, (size, production.shape[1]))
        comparison.add({"probabilities": batch}, {"probabilities": batch}, 0.01, 0.01 + i)
        report = comparison.report()
        assert report["score_samples"] <= settings.sample_cap
        assert report["latency_samples"] <= settings.sample_cap
    assert report["rows"] > 90_000 and report["score_samples"] == settings.sample_cap


def test_latency_delta_mean_and_percentiles_are_shadow_minus_production():
    comparison = ShadowComparison()
    label = {"label": np.array([1])}
    for i in range(100):
        comparison.add(label, label, 0.010, 0.010 + i / 1000)
    latency = comparison.report()["latency_delta_ms"]
    assert latency["mean"] == pytest.approx(49.5)
    assert latency["p50"] == pytest.approx(49.5)
    assert latency["p95"] == pytest.approx(94.05)


def test_the_same_inputs_give_the_same_report():
    def run() -> dict[str, object]:
        rng = np.random.default_rng(11)
        production = probabilities(rng, 3_000)
        shadow = production + rng.normal(0, 1e-3, production.shape).astype(np.float32)
        comparison = ShadowComparison(ComparisonSettings(sample_cap=500))
        feed(comparison, {"probabilities": production}, {"probabilities": shadow}, batch=37)
        return comparison.report()

    assert run() == run()


def test_adds_from_several_threads_are_all_counted():
    comparison = ShadowComparison()
    label = {"label": np.arange(10)}

    def work() -> None:
        for _ in range(200):
            comparison.add(label, label, 0.01, 0.02)
            comparison.add_shed()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report = comparison.report()
    assert report["requests"] == 800 and report["rows"] == 8_000
    assert report["agreement"] == 1.0 and report["shed"] == 800


@pytest.mark.parametrize(("field", "value", "message"), [
    ("kind", "regression", "kind must be one of auto, class, vector"),
    ("tolerance", -1.0, "tolerance must be a finite number >= 0"),
    ("tolerance", float("nan"), "tolerance must be a finite number >= 0"),
    ("min_cosine", 1.5, "min_cosine must be between -1 and 1"),
    ("bins", 1, "bins must be an integer from 2 to 100"),
    ("sample_cap", 10, "sample_cap must be an integer from 100 to 1000000"),
    ("output", "", "output must be an output tensor name or None"),
    ("argmax", "yes", "argmax must be true or false"),
])
def test_bad_settings_raise_value_error_naming_what_to_fix(field, value, message):
    with pytest.raises(ValueError, match=message):
        ComparisonSettings(**{field: value})
