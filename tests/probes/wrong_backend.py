"""A backend plugin for the probe tests: a ``.answers`` file is JSON {"scale": k} and the
model answers y = x * k, until :data:`WRONG` is set; then it answers zeros, with status
200 and nothing logged: a model that silently returns wrong answers."""

from __future__ import annotations

import json
import threading

import numpy as np

import appliance
from appliance.signature import TensorSpec

#: set: every answer is zeros (the model "silently goes wrong")
WRONG = threading.Event()


class AnswersModel(appliance.LoadedModel):
    def __init__(self, scale: float) -> None:
        self.scale = scale
        self.inputs = [TensorSpec("x", "FP32", (-1, 2))]
        self.outputs = [TensorSpec("y", "FP32", (-1, 2))]

    def predict(self, inputs):
        x = inputs["x"]
        if WRONG.is_set():
            return {"y": np.zeros_like(x)}
        return {"y": x * np.float32(self.scale)}


class AnswersBackend(appliance.Backend):
    name = "answers"
    formats = ("answers",)
    suffixes = (".answers",)

    def load(self, source, *, options):
        return AnswersModel(json.loads(source.read_bytes())["scale"])


@appliance.hookimpl
def appliance_backends():
    return [AnswersBackend()]
