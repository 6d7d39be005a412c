"""Rebuild ``breast_cancer.onnx`` (needs the test extras: scikit-learn, skl2onnx).

    python -m appliance.demo.build_breast_cancer [OUTPUT]

Trains a logistic regression on scikit-learn's bundled breast-cancer data set (569 rows,
30 features) and exports it with skl2onnx, zipmap off. The fit is deterministic, so the
same library versions give the same file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def build(path: Path) -> float:
    """Write the model to ``path``; return its training accuracy."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    X, y = load_breast_cancer(return_X_y=True)
    clf = LogisticRegression(max_iter=10000).fit(X, y)
    onx = to_onnx(clf, initial_types=[("input", FloatTensorType([None, X.shape[1]]))],
                  options={id(clf): {"zipmap": False}}, target_opset=17)
    path.write_bytes(onx.SerializeToString())
    return float(clf.score(X, y))


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name(
        "breast_cancer.onnx")
    accuracy = build(out)
    print(f"wrote {out} (training accuracy {accuracy:.4f}, numpy {np.__version__})")


if __name__ == "__main__":
    main()
