"""The drift monitor: the hot-path ``observe`` and the windowed evaluation behind it.

``observe`` (called by the data plane after every production inference) finds the
model's :class:`~.sampler.ModelSampler` in a dictionary keyed by (model, version) and
hands it the request's arrays; it also remembers the request id for feedback
(:mod:`.recent`). The first request of a (model, version) resolves its layout from the
signature (``signature_of``) and reads the model's config and reference from
``drift.db`` once (the only disk read on the request path, once per version); a version
whose features differ from the model's sampler is not sampled.

``tick`` closes every model's window: a finished capture becomes the model's reference
(that window is not evaluated, since it *is* the reference), otherwise the window is
evaluated (:mod:`.evaluate`) and stored with its history (:mod:`.store`). A small timer
thread calls ``tick`` every ``interval_s``; tests call it directly with their own
``clock`` (seconds since the epoch) instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..errors import NotFound
from ..signature import TensorSpec
from .config import DriftConfig, Layout, check_config, effective, layout_of
from .evaluate import evaluate_window
from .recent import Answered, RecentRequests
from .reference import Reference, build_reference
from .sampler import ModelSampler, predicted_classes
from .settings import DriftSettings
from .stats import FloatArray
from .store import DriftStore

log = logging.getLogger(__name__)

#: (model, version or None for the default) -> (inputs, outputs); NotFound if unknown
SignatureOf = Callable[[str, str | None], tuple[list[TensorSpec], list[TensorSpec]]]


def _no_signatures(model: str, version: str | None) -> tuple[list[TensorSpec], list[TensorSpec]]:
    raise NotFound(f"unknown model {model!r}")


class DriftMonitor:
    def __init__(self, settings: DriftSettings, data_dir: Path, *,
                 signature_of: SignatureOf = _no_signatures,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.signature_of = signature_of
        self.clock = clock
        self.store = DriftStore(data_dir / "drift.db")
        self.recent = RecentRequests(settings.feedback_capacity, settings.feedback_ttl_s,
                                     clock)
        self._attached: dict[tuple[str, str], tuple[ModelSampler | None, Layout]] = {}
        self._samplers: dict[str, ModelSampler] = {}
        self._started: dict[str, float] = {}
        self._references: dict[str, Reference | None] = {}
        self._configs: dict[str, DriftConfig | None] = {}
        self._unmonitored: dict[str, str] = {}
        self._latest: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()  # attach, tick and configuration, never observe
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the hot path --------------------------------------------------------------------
    def observe(self, model: str, version: str, request_id: str | None,
                arrays: Mapping[str, Any], outputs: Mapping[str, Any],
                traffic: str = "production") -> None:
        """Sample one answered request (production traffic only); O(1), no I/O."""
        if traffic != "production":
            return
        attached = self._attached.get((model, version))
        if attached is None:
            attached = self._attach(model, version)
        sampler, layout = attached
        if sampler is not None:
            first = arrays.get(layout.inputs[0].name)
            if first is not None and first.ndim:
                sampler.observe(arrays, outputs, int(first.shape[0]))
        if request_id:
            self.recent.remember(request_id, Answered(
                model, version, predicted_classes(layout, outputs), self.clock()))

    def _attach(self, model: str, version: str) -> tuple[ModelSampler | None, Layout]:
        with self._lock:
            try:
                inputs, outputs = self.signature_of(model, version)
                config = self._config(model)
            except Exception as exc:  # never fail the request that is being answered
                log.warning("drift: cannot sample %s version %s: %s", model, version, exc)
                self._attached[(model, version)] = (None, Layout((), None, "value"))
                return self._attached[(model, version)]
            layout = layout_of(inputs, outputs, config.prediction_output if config else None)
            sampler: ModelSampler | None = self._samplers.get(model)
            width = len(layout.features)
            if not width or width > self.settings.max_features:
                self._unmonitored[model] = (
                    f"{width} input features: drift is watched for models with 1 to "
                    f"{self.settings.max_features} numeric features (drift.max_features)")
                sampler = None
            elif sampler is None and self.settings.enabled:
                capture = 0 if self._reference(model) else self.settings.capture_rows
                sampler = ModelSampler(model, layout, self.settings.reservoir_rows,
                                       seed=self.settings.seed, capture_rows=capture)
                self._samplers[model] = sampler
                self._started[model] = self.clock()
            elif sampler is not None and sampler.layout.features != layout.features:
                log.warning("drift: %s version %s has other features than the sampled "
                            "version; its requests are not sampled", model, version)
                sampler = None
            self._attached[(model, version)] = (sampler, layout)
            return sampler, layout

    # -- evaluation ----------------------------------------------------------------------
    def tick(self, models: list[str] | None = None) -> list[dict[str, Any]]:
        """Close every model's window (or those of ``models``): store captured
        references, evaluate the rest; the results stored."""
        results = []
        with self._lock:
            samplers = [(m, s) for m, s in self._samplers.items()
                        if models is None or m in models]
        for model, sampler in samplers:
            with self._lock:
                end = self.clock()
                start = self._started.get(model, end)
                self._started[model] = end
            result = self._close_window(model, sampler, start, end)
            if result is not None:
                results.append(result)
        return results

    def _close_window(self, model: str, sampler: ModelSampler, start: float, end: float
                      ) -> dict[str, Any] | None:
        window = sampler.take()
        captured = sampler.take_capture()
        if captured is not None:
            rows, scores = captured
            self._store_reference(model, rows, scores, source="capture")
            return None
        reference = self._reference(model)
        if reference is None:
            return None
        eff = effective(self.settings, self._config(model))
        result = evaluate_window(reference, window, eff, start=start, end=end,
                                 kind=sampler.layout.prediction_kind)
        result["model"] = model
        self.store.add_result(model, result, keep=self.settings.history_windows)
        self._latest[model] = result
        return result

    def _store_reference(self, model: str, rows: FloatArray, scores: FloatArray, *,
                         source: str) -> Reference:
        import numpy as np

        features = self._features(model)
        eff = effective(self.settings, self._config(model))
        prediction = scores if np.isfinite(scores).all() else np.zeros(0)
        reference = build_reference(features, rows, prediction, bins=eff.bins, source=source,
                                    seed=self.settings.seed)
        self.store.put_reference(model, reference, self.clock())
        self._references[model] = reference
        return reference

    def _reference(self, model: str) -> Reference | None:
        if model not in self._references:
            self._references[model] = self.store.reference(model)
        return self._references[model]

    def _config(self, model: str) -> DriftConfig | None:
        if model not in self._configs:
            self._configs[model] = self.store.config(model)
        return self._configs[model]

    def _features(self, model: str) -> tuple[str, ...]:
        sampler = self._samplers.get(model)
        if sampler is not None:
            return sampler.layout.features
        inputs, outputs = self.signature_of(model, None)
        return layout_of(inputs, outputs).features

    # -- configuration -------------------------------------------------------------------
    def set_config(self, model: str, config: DriftConfig) -> DriftConfig:
        """Check ``config`` against the model's signature (BadRequest naming what it does
        not have), store it, and restart the model's sampling with it."""
        inputs, outputs = self.signature_of(model, None)
        check_config(model, config, inputs, outputs, self.settings)
        with self._lock:
            self.store.put_config(model, config, self.clock())
            self._configs[model] = config
            self._forget(model)
        return config

    def set_reference(self, model: str, rows: FloatArray, predictions: FloatArray,
                      *, source: str = "upload") -> Reference:
        """Store an uploaded reference (BadRequest when it does not fit the features)."""
        with self._lock:
            reference = self._store_reference(model, rows, predictions, source=source)
            sampler = self._samplers.get(model)
            if sampler is not None:
                sampler.stop_capture()
        return reference

    def _forget(self, model: str) -> None:
        self._samplers.pop(model, None)
        self._started.pop(model, None)
        self._unmonitored.pop(model, None)
        for key in [k for k in self._attached if k[0] == model]:
            del self._attached[key]

    # -- what the API, the CLI and alerting read -----------------------------------------
    def config(self, model: str) -> DriftConfig:
        """The model's stored overrides (empty when none)."""
        return self._config(model) or DriftConfig()

    def reference(self, model: str) -> Reference | None:
        return self._reference(model)

    def latest(self, model: str) -> dict[str, Any] | None:
        if model not in self._latest:
            stored = self.store.results(model, limit=1)
            if not stored:
                return None
            self._latest[model] = stored[-1]
        return self._latest[model]

    def breaches(self) -> list[dict[str, Any]]:
        """Models whose latest window drifted or warned: for the alerting engine."""
        out = []
        for model in sorted(set(self._latest) | set(self.store.monitored_models())):
            result = self.latest(model)
            if result is None or result["status"] not in ("drift", "warning"):
                continue
            out.append({"model": model, "status": result["status"],
                        "features": result["drifted"],
                        "prediction": bool(result["prediction"].get("drift")),
                        "window_end": result["window"]["end"]})
        return out

    def sampling(self, model: str) -> dict[str, Any]:
        """The live state of a model's sampling (no evaluation)."""
        sampler = self._samplers.get(model)
        if sampler is None:
            return {"active": False, "reason": self._unmonitored.get(
                model, "no production request sampled since the server started")}
        capture = sampler.capture
        return {"active": True, "window_rows": sampler.count,
                "window_started": self._started.get(model),
                "capturing": None if capture is None else {
                    "rows": sampler.captured, "of": len(capture)}}

    # -- the timer -----------------------------------------------------------------------
    def start(self) -> None:
        """Evaluate every ``interval_s`` in a daemon thread until :meth:`close`."""
        if self._thread is not None or not self.settings.enabled:
            return
        self._thread = threading.Thread(target=self._run, name="drift-monitor", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.interval_s):
            try:
                self.tick()
            except Exception:  # one bad window must not stop the monitor
                log.exception("drift evaluation failed")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
