"""A backend plugin for the routing tests: a ``.routed`` file is JSON {"scale": k,
"mode": M} and the model answers y = x * k over FP32 [-1, 2], except that

* ``"mode": "raise"``: every predict on real inputs raises ``RuntimeError("device
  lost")`` (a candidate that breaks at inference);
* ``"mode": "gate"``: every predict on real inputs waits until :data:`GATE` is set (a
  version that is stuck, e.g. on a busy accelerator);
* ``"mode": "cold"``: the warm-up raises, so the version never loads in a server (its
  load check at import reads the signature only).

Inputs of zeros only (the warm-up's, generated from the signature) are answered in the
other modes, so those versions load and warm up like healthy ones; each warm-up also
sleeps a millisecond so the version runs on a worker thread, never inline on the event
loop (where a held request would hold the whole server).
"""

from __future__ import annotations

import json
import threading
import time

import numpy as np

import appliance
from appliance.signature import TensorSpec

#: cleared: "gate" versions hold every real request until it is set again
GATE = threading.Event()
GATE.set()


class RoutedModel(appliance.LoadedModel):
    def __init__(self, scale: float, mode: str) -> None:
        self.scale, self.mode = scale, mode
        self.inputs = [TensorSpec("x", "FP32", (-1, 2))]
        self.outputs = [TensorSpec("y", "FP32", (-1, 2))]

    def predict(self, inputs):
        x = inputs["x"]
        if not x.any():
            if self.mode == "cold":
                raise RuntimeError("warm-up failed")
            time.sleep(0.001)  # the warm-up: slow enough not to run inline
        elif self.mode == "raise":
            raise RuntimeError("device lost")
        elif self.mode == "gate":
            GATE.wait(60)
        return {"y": x * np.float32(self.scale)}


class RoutedBackend(appliance.Backend):
    name = "routed"
    formats = ("routed",)
    suffixes = (".routed",)

    def load(self, source, *, options):
        spec = json.loads(source.read_bytes())
        return RoutedModel(spec["scale"], spec.get("mode", "ok"))


@appliance.hookimpl
def appliance_backends():
    return [RoutedBackend()]
