"""Direct tests of the declared-input checks (appliance/validation.py)."""

from __future__ import annotations

import pytest

from appliance.errors import BadRequest, SignatureMismatch
from appliance.protocol.types import RequestInput, RequestOutput
from appliance.signature import TensorSpec
from appliance.validation import check_declared_inputs, check_requested_outputs

SPECS = {"x": TensorSpec("x", "FP32", (-1, 3)), "mask": TensorSpec("mask", "BOOL", (-1,))}
OUTS = {"y": TensorSpec("y", "FP32", (-1, 3)), "z": TensorSpec("z", "INT64", (-1,))}


def inp(name: str = "x", datatype: str = "FP32", shape: list[int] | None = None) -> RequestInput:
    return RequestInput(name=name, shape=shape if shape is not None else [2, 3],
                        datatype=datatype)


def test_matching_declarations_pass():
    check_declared_inputs("m", SPECS, [inp(), inp("mask", "BOOL", [7])])
    check_requested_outputs("m", OUTS, [RequestOutput("z")])
    check_requested_outputs("m", OUTS, None)


@pytest.mark.parametrize(("inputs", "needle"), [
    ([inp(), inp("mask", "BOOL", [1]), inp("extra")], "has 3 inputs"),
    ([inp("nope")], "no input named 'nope'"),
    ([inp(), inp()], "appears more than once"),
    ([inp(datatype="FP64"), inp("mask", "BOOL", [1])], "must have datatype FP32, got FP64"),
    ([inp(shape=[2, 4]), inp("mask", "BOOL", [1])], "must have shape [-1, 3]"),
    ([inp(shape=[3]), inp("mask", "BOOL", [1])], "rank 2"),
    ([inp(shape=[1] * 100), inp("mask", "BOOL", [1])], "a shape of 100 dimensions"),
    ([inp(shape=[-2, 3]), inp("mask", "BOOL", [1])], "must not be negative"),
    ([inp()], "'mask' is missing"),
])
def test_each_mismatch_names_the_tensor(inputs, needle):
    with pytest.raises(SignatureMismatch) as info:
        check_declared_inputs("m", SPECS, inputs)
    assert needle in info.value.message


def test_an_unknown_datatype_lists_the_known_ones():
    with pytest.raises(BadRequest, match="unknown datatype 'FLOAT'"):
        check_declared_inputs("m", SPECS, [inp(datatype="FLOAT")])


@pytest.mark.parametrize(("names", "needle"), [
    (["y", "z", "y"], "asks for 3 outputs"),
    (["q"], "no output named 'q'"),
    (["y", "y"], "'y' is requested more than once"),
])
def test_requested_outputs_are_bounded_known_and_distinct(names, needle):
    with pytest.raises(SignatureMismatch) as info:
        check_requested_outputs("m", OUTS, [RequestOutput(n) for n in names])
    assert needle in info.value.message
