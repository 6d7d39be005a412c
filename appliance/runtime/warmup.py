"""Warm-up inputs generated from a signature, and timing of the first predictions."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..backend import LoadedModel
from ..signature import DATATYPE_TO_NUMPY, TensorSpec


def inputs_from_signature(specs: list[TensorSpec], batch: int = 1) -> dict[str, np.ndarray]:
    """Zeros of each input's dtype with every dynamic dimension set to ``batch``."""
    out: dict[str, np.ndarray] = {}
    for spec in specs:
        shape = tuple(batch if d < 0 else d for d in spec.shape)
        if spec.datatype == "BYTES":
            out[spec.name] = np.full(shape, b"", dtype=object)
        else:
            out[spec.name] = np.zeros(shape, dtype=DATATYPE_TO_NUMPY.get(spec.datatype,
                                                                         np.float32))
    return out


def inputs_from_manifest(manifest: dict[str, Any]) -> dict[str, np.ndarray] | None:
    """The package's declared warm-up inputs (``[warmup] inputs = [...]``), if any."""
    from ..protocol.tensors import json_to_array

    declared = (manifest.get("warmup") or {}).get("inputs")
    if not declared:
        return None
    return {t["name"]: json_to_array(t["name"], t["datatype"], list(t["shape"]), t["data"], i)
            for i, t in enumerate(declared)}


def warm_up(model: LoadedModel, runs: int = 3,
            inputs: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    """Predict ``runs`` times on ``inputs`` (default: generated from the signature);
    return the median latency in µs."""
    source = "manifest" if inputs is not None else "signature"
    inputs = inputs if inputs is not None else inputs_from_signature(model.inputs)
    timings = []
    for _ in range(runs):
        t0 = time.perf_counter()
        model.predict(inputs)
        timings.append((time.perf_counter() - t0) * 1e6)
    timings.sort()
    return {"runs": runs, "median_us": round(timings[len(timings) // 2], 1), "inputs": source}
