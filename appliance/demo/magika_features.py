"""Turn file bytes into the input magika's model expects, and its output into a label.

Mirrors magika's own feature extraction for its ``standard_v3`` models: the first
``beg_size`` bytes of the first block with leading whitespace stripped, padded on the
right, then the last ``end_size`` bytes of the last block with trailing whitespace
stripped, padded on the left; the padding token is 256.

    python -m appliance.demo.magika_features FILE   # prints a v2 JSON request body
"""

from __future__ import annotations

import json
import sys
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from . import magika_model_dir


@cache
def magika_config() -> dict[str, Any]:
    model_dir = magika_model_dir()
    if model_dir is None:
        raise RuntimeError("magika is not installed (pip install --no-deps magika)")
    config: dict[str, Any] = json.loads((model_dir / "config.min.json").read_text())
    return config


def features(content: bytes) -> np.ndarray:
    """INT32 [2048] features for one file's bytes."""
    cfg = magika_config()
    block, beg_size, end_size, pad = (cfg["block_size"], cfg["beg_size"], cfg["end_size"],
                                      cfg["padding_token"])
    beg = list(content[:block].lstrip()[:beg_size])
    end = list(content[-block:].rstrip()[-end_size:]) if content else []
    beg += [pad] * (beg_size - len(beg))
    end = [pad] * (end_size - len(end)) + end
    return np.array(beg + end, dtype=np.int32)


def label(scores: np.ndarray) -> tuple[str, float]:
    """The content type and score of one row of ``target_label`` scores."""
    labels = magika_config()["target_labels_space"]
    i = int(np.argmax(scores))
    return labels[i], float(scores[i])


def main() -> None:
    data = Path(sys.argv[1]).read_bytes()
    row = features(data)
    print(json.dumps({"inputs": [{"name": "bytes", "datatype": "INT32", "shape": [1, row.size],
                                  "data": row.tolist()}]}))


if __name__ == "__main__":
    main()
