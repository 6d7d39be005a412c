"""Check decoded request tensors against a model's signature before a backend sees them.

Every mismatch is a :class:`SignatureMismatch` (400) that names the tensor and says what
was expected, so a caller can fix the request without reading server logs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from .errors import SignatureMismatch
from .signature import TensorSpec


def _describe(spec: TensorSpec) -> str:
    return f"{spec.name} ({spec.datatype} {list(spec.shape)})"


def validate_inputs(model: str, specs: Mapping[str, TensorSpec],
                    datatypes: Mapping[str, str], arrays: Mapping[str, np.ndarray]) -> None:
    """``datatypes`` are the datatypes the request declared, by input name."""
    unknown = [name for name in arrays if name not in specs]
    if unknown:
        raise SignatureMismatch(
            f"model {model!r} has no input named {unknown[0]!r}; its inputs are: "
            + ", ".join(_describe(s) for s in specs.values()))
    missing = [name for name in specs if name not in arrays]
    if missing:
        raise SignatureMismatch(
            f"input {missing[0]!r} is missing; model {model!r} needs: "
            + ", ".join(_describe(s) for s in specs.values()))
    for name, array in arrays.items():
        spec = specs[name]
        if datatypes[name] != spec.datatype:
            raise SignatureMismatch(f"input {name!r} must have datatype {spec.datatype}, "
                                    f"got {datatypes[name]}")
        if not spec.accepts_shape(array.shape):
            raise SignatureMismatch(
                f"input {name!r} must have shape {list(spec.shape)} (-1 = any size), "
                f"got {list(array.shape)}")


def validate_outputs(model: str, specs: Mapping[str, TensorSpec],
                     requested: Iterable[str] | None) -> None:
    if requested is None:
        return
    for name in requested:
        if name not in specs:
            raise SignatureMismatch(f"model {model!r} has no output named {name!r}; its "
                                    f"outputs are: {', '.join(specs)}")
