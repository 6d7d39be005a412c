"""The hot-path half of drift detection: a bounded, seeded reservoir per model.

``observe`` runs after every production inference. Per model it keeps one preallocated
``reservoir_rows x (features + 1)`` float64 block (the last column is the prediction
score) filled by reservoir sampling, Li's Algorithm L: once the block is full, the
index of the next row to keep is drawn ahead of time, so a request that keeps no row
costs a dictionary lookup and a counter increment, with no allocation and no random
draw; a kept row is copied into its slot. Nothing is written to disk here.

The evaluator takes the window with :meth:`ModelSampler.take` (a copy of the filled
rows under the model's lock, then a reset): the lock is held by ``observe`` only while
it copies kept rows and by ``take`` for one block copy per window, so the two hardly
ever meet. Each model's draws come from ``random.Random(seed ^ crc32(model))``: the
same requests in the same windows give the same samples, bit for bit.

While a model has no reference, its first ``capture_rows`` rows are also kept (in
arrival order) in a capture block that the evaluator turns into the reference.
"""

from __future__ import annotations

import math
import random
import threading
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import Layout
from .stats import FloatArray


@dataclass(frozen=True)
class Window:
    """What one window's sampler saw: kept rows, their prediction scores, rows seen."""

    rows: FloatArray
    prediction: FloatArray
    seen: int
    skipped: int


def prediction_scores(layout: Layout, outputs: Mapping[str, Any], n: int) -> FloatArray:
    """Per row: the maximum probability, or the first column of the value output."""
    out = outputs.get(layout.prediction_output) if layout.prediction_output else None
    if out is None or out.size < n:
        return np.full(n, np.nan)
    flat = np.asarray(out, dtype=np.float64).reshape(n, -1)
    return np.asarray(flat.max(axis=1) if layout.prediction_kind == "probabilities"
                      else flat[:, 0], dtype=np.float64)


def predicted_classes(layout: Layout, outputs: Mapping[str, Any]) -> list[Any]:
    """Per row: the arg-max class of the probabilities, or the first value."""
    out = outputs.get(layout.prediction_output) if layout.prediction_output else None
    if out is None or out.ndim == 0:
        return []
    if out.shape[0] == 1:  # one row: cheaper in Python than numpy
        values: list[Any] = out.ravel().tolist()
        if layout.prediction_kind == "probabilities":
            return [values.index(max(values))]
        return values[:1]
    flat = out.reshape(out.shape[0], -1)
    result: list[Any] = (flat.argmax(axis=1) if layout.prediction_kind == "probabilities"
                         else flat[:, 0]).tolist()
    return result


class ModelSampler:
    """One model's reservoir (and capture block while it has no reference)."""

    def __init__(self, model: str, layout: Layout, capacity: int, *, seed: int,
                 capture_rows: int = 0) -> None:
        self.model = model
        self.layout = layout
        self.width = layout.width
        self.capacity = capacity
        self.block = np.zeros((capacity, self.width + 1))
        self.lock = threading.Lock()
        self.rng = random.Random(seed ^ zlib.crc32(model.encode()))
        self.capture: FloatArray | None = (np.zeros((capture_rows, self.width + 1))
                                           if capture_rows else None)
        self.captured = 0
        self.skipped = 0
        self._reset()

    def _reset(self) -> None:
        self.count = 0
        self._w = 1.0
        self.next_keep = self.capacity - 1
        self._advance()

    def _advance(self) -> None:
        """Algorithm L: after keeping row ``next_keep``, draw the next row to keep."""
        k = self.capacity
        self._w *= math.exp(math.log(1.0 - self.rng.random()) / k)
        if self._w <= 0.0:  # underflow after ~1e300 rows: keep nothing more
            self.next_keep = 1 << 62
            return
        gap = math.log(1.0 - self.rng.random()) / math.log1p(-self._w)
        self.next_keep += int(min(gap, 1e18)) + 1

    def observe(self, arrays: Mapping[str, Any], outputs: Mapping[str, Any], n: int) -> None:
        """Count ``n`` rows; keep those the reservoir (and the capture block) wants."""
        with self.lock:
            start = self.count
            end = start + n
            capturing = self.capture is not None and self.captured < len(self.capture)
            if ((start < self.capacity or self.next_keep < end or capturing)
                    and not self._keep(arrays, outputs, n, start, end, capturing)):
                return
            self.count = end

    def _views(self, arrays: Mapping[str, Any], n: int) -> list[tuple[int, int, Any]] | None:
        """(first column, past-last column, rows x width view) per input; None when an
        input is missing or of another size (another version's signature)."""
        views = []
        offset = 0
        for column in self.layout.inputs:
            array = arrays.get(column.name)
            if array is None or array.size != n * column.width:
                return None
            views.append((offset, offset + column.width, array.reshape(n, column.width)))
            offset += column.width
        return views

    def _scores(self, outputs: Mapping[str, Any], n: int) -> Any:
        name = self.layout.prediction_output
        out = outputs.get(name) if name else None
        if n == 1 and out is not None and out.size:  # one row: cheaper in Python than numpy
            values = out.ravel().tolist()
            return [max(values) if self.layout.prediction_kind == "probabilities"
                    else values[0]]
        return prediction_scores(self.layout, outputs, n)

    def _keep(self, arrays: Mapping[str, Any], outputs: Mapping[str, Any], n: int,
              start: int, end: int, capturing: bool) -> bool:
        views = self._views(arrays, n)
        if views is None:  # a version with another signature: not this model's layout
            self.skipped += n
            return False
        scores = self._scores(outputs, n)
        if capturing and self.capture is not None:
            take = min(n, len(self.capture) - self.captured)
            at = self.captured
            for lo, hi, view in views:
                self.capture[at:at + take, lo:hi] = view[:take]
            self.capture[at:at + take, -1] = scores[:take]
            self.captured += take
        fill = max(0, min(end, self.capacity) - start)
        if fill:
            for lo, hi, view in views:
                self.block[start:start + fill, lo:hi] = view[:fill]
            self.block[start:start + fill, -1] = scores[:fill]
        while self.next_keep < end:
            i = self.next_keep - start
            slot = self.rng.randrange(self.capacity)
            row = self.block[slot]
            for lo, hi, view in views:
                row[lo:hi] = view[i]
            row[-1] = scores[i]
            self._advance()
        return True

    def take(self) -> Window:
        """The window so far (a copy), and a fresh window from here on."""
        with self.lock:
            kept = min(self.count, self.capacity)
            block = self.block[:kept].copy()
            window = Window(block[:, :-1], block[:, -1], self.count, self.skipped)
            self.skipped = 0
            self._reset()
        return window

    def take_capture(self) -> tuple[FloatArray, FloatArray] | None:
        """The captured rows and scores once the capture block is full, then no more
        capturing; None while it is filling."""
        with self.lock:
            if self.capture is None or self.captured < len(self.capture):
                return None
            block, self.capture = self.capture, None
        return block[:, :-1], block[:, -1]

    def start_capture(self, rows: int) -> None:
        with self.lock:
            self.capture = np.zeros((rows, self.width + 1))
            self.captured = 0

    def stop_capture(self) -> None:
        with self.lock:
            self.capture = None
            self.captured = 0


