"""A backend plugin for the health tests: a ``.flaky`` file is JSON {"scale": k}; it
answers y = x * k until :data:`BROKEN` is set, then every predict raises."""

from __future__ import annotations

import json
import threading

import numpy as np

import appliance
from appliance.signature import TensorSpec

#: set: every predict raises (the backend "starts failing at inference")
BROKEN = threading.Event()


class FlakyModel(appliance.LoadedModel):
    def __init__(self, scale: float) -> None:
        self.scale = scale
        self.inputs = [TensorSpec("x", "FP32", (-1, 2))]
        self.outputs = [TensorSpec("y", "FP32", (-1, 2))]

    def predict(self, inputs):
        if BROKEN.is_set():
            raise RuntimeError("device lost")
        return {"y": inputs["x"] * np.float32(self.scale)}


class FlakyBackend(appliance.Backend):
    name = "flaky"
    formats = ("flaky",)
    suffixes = (".flaky",)

    def load(self, source, *, options):
        return FlakyModel(json.loads(source.read_bytes())["scale"])


@appliance.hookimpl
def appliance_backends():
    return [FlakyBackend()]
