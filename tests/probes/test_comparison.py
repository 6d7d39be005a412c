"""How a probe compares an answer with a golden example's expected output, and the
``[probes]`` settings."""

from __future__ import annotations

import numpy as np
import pytest
from probe_packages import tensor

from appliance.errors import ConfigError
from appliance.probes.golden import compare
from appliance.settings import load_settings

EXPECTED = tensor("y", [2.0, 4.0])


def test_an_answer_within_atol_plus_rtol_matches_and_one_beyond_names_the_worst_value():
    close = np.array([[2.00005, 3.99996]], dtype=np.float32)
    assert compare(EXPECTED, close, "FP32", atol=1e-4, rtol=0) is None
    off = np.array([[2.00005, 4.5]], dtype=np.float32)
    why = compare(EXPECTED, off, "FP32", atol=1e-4, rtol=0)
    assert why == ("output `y`: 1 of 2 values differ beyond atol 0.0001 + rtol 0; worst "
                   "at [0, 1]: expected 4.0, got 4.5")
    assert compare(EXPECTED, off, "FP32", atol=0, rtol=0.2) is None  # 0.5 <= 0.2 * 4


def test_a_wrong_shape_datatype_or_a_missing_output_fails_before_any_value_is_compared():
    assert compare(EXPECTED, None, None, 1e-4, 0) == "output `y` is missing from the answer"
    assert compare(EXPECTED, np.zeros((2,), np.float32), "FP32", 1e-4, 0) == (
        "output `y`: expected shape [1, 2], got [2]")
    assert compare(EXPECTED, np.zeros((1, 2), np.float64), "FP64", 1e-4, 0) == (
        "output `y`: expected datatype FP32, got FP64")


def test_nan_matches_nan_and_strings_and_booleans_compare_exactly():
    nan = tensor("y", [float("nan"), 1.0])
    assert compare(nan, np.array([[np.nan, 1.0]], np.float32), "FP32", 1e-4, 0) is None
    words = tensor("label", ["cat", "dog"], datatype="BYTES")
    got = np.array([[b"cat", b"dot"]], dtype=object)
    assert compare(words, got, "BYTES", 1e-4, 1e-5) == (
        "output `label`: 1 of 2 values differ beyond exact equality; worst at [0, 1]: "
        "expected b'dog', got b'dot'")
    flags = tensor("ok", [True, False], datatype="BOOL")
    assert compare(flags, np.array([[True, False]]), "BOOL", 1e-4, 1e-5) is None


@pytest.mark.parametrize(("section", "message"), [
    ({"interval_s": 5}, "interval_s"),
    ({"idle_interval_s": 0}, "idle_interval_s"),
    ({"atol": -1}, "atol"),
])
def test_probe_settings_refuse_unknown_keys_and_out_of_range_values(section, message):
    with pytest.raises(ConfigError, match=message):
        load_settings({"probes": section}, environ={})
