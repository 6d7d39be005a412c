"""Golden examples that could never be replayed are refused when the package is pushed,
naming the example's index and the mismatch; nothing is registered."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from probe_packages import DOUBLES, package, tensor

from appliance.errors import BadRequest
from appliance.packages import push_package


def example(inputs: list[dict] | None = None, outputs: list[dict] | None = None) -> dict:
    return {"inputs": DOUBLES["inputs"] if inputs is None else inputs,
            "outputs": DOUBLES["outputs"] if outputs is None else outputs}


REFUSED = {
    "unknown output": (example(outputs=[tensor("z", [2.0, 4.0])]),
                       r"golden\[1\]\.outputs\[0\] \(`z`\): the model has no output named "
                       r"`z` \(its outputs: y\)"),
    "unknown input": (example(inputs=[tensor("x", [1.0, 2.0]), tensor("q", [1.0])]),
                      r"golden\[1\]\.inputs\[1\] \(`q`\): the model has no input named `q`"),
    "wrong datatype": (example(inputs=[tensor("x", [1, 2], datatype="INT64")]),
                       r"golden\[1\]\.inputs\[0\] \(`x`\): datatype INT64 does not match "
                       r"the model's FP32"),
    "incompatible shape": (example(outputs=[tensor("y", [2.0, 4.0, 6.0])]),
                           r"golden\[1\]\.outputs\[0\] \(`y`\): shape \[1, 3\] is not "
                           r"compatible with the model's \[-1, 2\]"),
    "missing input": (example(inputs=[]),
                      r"golden\[1\]: gives no value for the model's input `x`"),
    "data not filling the shape": (
        example(outputs=[tensor("y", [2.0, 4.0], shape=[2, 2])]),
        r"golden\[1\]\.outputs\[0\] \(`y`\): `y` has shape \[2, 2\], so it needs 4 elements"),
    "no expected output": (example(outputs=[]),
                           r"golden\[1\]: list at least one expected output"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_push_refuses_a_golden_example_that_does_not_fit_the_signature(tmp_path, registry,
                                                                       catalog, case):
    bad, message = REFUSED[case]
    pkg = package(tmp_path / "pkg", name="scale", fmt="onnx", golden=[DOUBLES, bad])
    with pytest.raises(BadRequest, match=message) as info:
        push_package(registry, catalog, pkg, actor="t")
    assert info.value.message.startswith("model.toml: golden[1]")
    assert "(checked against the manifest's signature)" in info.value.message
    assert registry.models() == []


def test_push_refuses_a_golden_example_that_fits_the_manifest_but_not_the_loaded_model(
        tmp_path, registry, catalog):
    # the manifest leaves x's width open; the ONNX model fixes it at 2
    pkg = package(tmp_path / "pkg", name="scale", fmt="onnx",
                  inputs=[{"name": "x", "datatype": "FP32", "shape": [-1, -1]}],
                  golden=[example(inputs=[tensor("x", [1.0, 2.0, 3.0])])])
    with pytest.raises(BadRequest, match=r"model\.toml: golden\[0\]\.inputs\[0\] \(`x`\): "
                       r"shape \[1, 3\] is not compatible with the model's \[-1, 2\].*"
                       r"checked against variants\[0\] as loaded"):
        push_package(registry, catalog, pkg, actor="t")
    assert registry.models() == []


def test_push_accepts_golden_examples_that_fit_and_keeps_them(tmp_path, registry, catalog):
    pkg = package(tmp_path / "pkg", name="scale", fmt="onnx", golden=[DOUBLES])
    record = push_package(registry, catalog, pkg, actor="t")
    assert record.manifest["golden"][0]["outputs"][0]["data"] == [2.0, 4.0]


def test_models_push_prints_the_golden_mismatch_and_fails(tmp_path):
    bad, _ = REFUSED["unknown output"]
    pkg = package(tmp_path / "pkg", name="scale", fmt="onnx", golden=[DOUBLES, bad])
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(tmp_path / "var")}
    env.pop("APPLIANCE_DISABLE_PLUGIN_AUTOLOAD", None)  # the CLI uses the entry points
    r = subprocess.run([sys.executable, "-m", "appliance.cli", "models", "push", str(pkg),
                        "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, (r.stdout, r.stderr)
    error = json.loads(r.stdout)["error"]
    assert "golden[1].outputs[0] (`z`): the model has no output named `z`" in error
