"""Packages for the probe tests, built in ``tmp_path``: a y = 2x model through the
``answers`` test backend (:mod:`wrong_backend`) or as a real ONNX file, with golden
examples given by the test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from helpers.models import scale_model

from appliance.packages import build_package
from appliance.packages.manifest import toml_text

X = {"name": "x", "datatype": "FP32", "shape": [-1, 2]}
Y = {"name": "y", "datatype": "FP32", "shape": [-1, 2]}
TAGS = {"owner": "ml@example.com", "sensitivity": "internal", "impact": "low"}


def tensor(name: str, data: list[Any], shape: list[int] | None = None,
           datatype: str = "FP32") -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape or [1, len(data)],
            "data": data}


#: y = 2x on one row: what both toy models answer
DOUBLES = {"inputs": [tensor("x", [1.0, 2.0])], "outputs": [tensor("y", [2.0, 4.0])]}


def package(root: Path, *, name: str, golden: list[dict[str, Any]], fmt: str = "answers",
            inputs: list[dict[str, Any]] | None = None) -> Path:
    """A one-variant package of a y = 2x model, built to ``root.tar``."""
    root.mkdir(parents=True)
    primary = "model.answers" if fmt == "answers" else "model.onnx"
    if fmt == "answers":
        (root / primary).write_text(json.dumps({"scale": 2.0}))
    else:
        scale_model(root / primary, 2.0)
    manifest = {"name": name, "version": "1",
                "variants": [{"precision": "fp32", "format": fmt, "primary": primary,
                              "files": [{"path": primary}]}],
                "inputs": inputs or [X], "outputs": [Y], "tags": TAGS, "golden": golden}
    (root / "model.toml").write_text(toml_text(manifest))
    out = root.with_suffix(".tar")
    build_package(root, out)
    return out
