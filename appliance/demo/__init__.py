"""Demo models for the embedded default: real models doing real jobs, no hub needed.

- ``breast_cancer``: logistic regression on scikit-learn's bundled breast-cancer data,
  exported to ONNX by ``build_breast_cancer.py`` beside this file (input ``input`` FP32
  [-1, 30]; outputs ``label`` INT64 [-1] and ``probabilities`` FP32 [-1, 2]).
- ``magika``: Google's file-type classifier, the ONNX model that ships inside the
  ``magika`` wheel (input ``bytes`` INT32 [-1, 2048]; output ``target_label`` FP32
  [-1, 214], class names in the wheel's ``config.min.json``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

HERE = Path(__file__).parent
BREAST_CANCER = HERE / "breast_cancer.onnx"


def magika_model_dir() -> Path | None:
    """The directory of magika's bundled standard model, or None if magika is absent."""
    spec = importlib.util.find_spec("magika")
    if spec is None or not spec.submodule_search_locations:
        return None
    models = Path(next(iter(spec.submodule_search_locations))) / "models"
    candidates = sorted(models.glob("standard_v*/model.onnx"))
    return candidates[-1].parent if candidates else None


def demo_models() -> list[tuple[str, Path]]:
    """(name, model file) for every demo model available on this install."""
    found = [("breast_cancer", BREAST_CANCER)]
    magika = magika_model_dir()
    if magika is not None:
        found.append(("magika", magika / "model.onnx"))
    return found
