"""Golden examples: checked against a signature at push, turned into arrays, compared.

A package's ``[[golden]]`` entries (:class:`~appliance.packages.manifest.Golden`) are
known inputs and the outputs they must give, within ``atol``. They reach this module as
plain dicts (the registry keeps the manifest as JSON), ``{"inputs": [tensor, ...],
"outputs": [tensor, ...], "atol": float | None}`` with tensors ``{"name", "datatype",
"shape", "data"}``.

:func:`check_golden` is what the install path runs: an example that could never be
replayed against the model (an unknown tensor name, a missing input, a datatype or
shape the signature does not accept, data that does not fill the shape) is refused
with the example's index and the mismatch. :func:`compare` is what a probe runs on an
answer: shapes and datatypes must be equal, numbers within ``atol + rtol * |expected|``
(``numpy.isclose``; NaN equals NaN), booleans and strings exactly equal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import BadRequest
from ..protocol.tensors import BF16_DTYPE, BINARY_ONLY, json_to_array
from ..signature import TensorSpec

__all__ = ["check_golden", "compare", "tensor_array"]

Tensor = Mapping[str, Any]


def tensor_array(tensor: Tensor, index: int = 0) -> np.ndarray:
    """The array of one golden tensor; BadRequest (without a location) when its data
    does not fit its datatype and shape."""
    name, datatype = str(tensor["name"]), str(tensor["datatype"])
    shape = [int(d) for d in tensor["shape"]]
    if any(d < 0 for d in shape):
        raise BadRequest(f"shape {shape} must be concrete: a golden example has no "
                         "dynamic dimensions")
    wire = "FP32" if datatype in BINARY_ONLY else datatype  # JSON carries them as numbers
    try:
        array = json_to_array(name, wire, shape, tensor["data"], index)
    except BadRequest as exc:  # its messages say "input 'x'"; a golden output is not one
        raise BadRequest(exc.message.replace(f"input '{name}'", f"`{name}`")) from None
    if datatype == "FP16":
        return array.astype(np.float16)
    if datatype == "BF16":
        if BF16_DTYPE is None:
            raise BadRequest("BF16 needs the ml_dtypes package on the server")
        return array.astype(BF16_DTYPE)
    return array


def _check_tensors(where: str, kind: str, given: Sequence[Tensor],
                   specs: Sequence[TensorSpec], *, all_needed: bool) -> None:
    by_name = {s.name: s for s in specs}
    known = ", ".join(by_name) or "none"
    seen: set[str] = set()
    for j, tensor in enumerate(given):
        name = str(tensor["name"])
        at = f"{where}.{kind}s[{j}] (`{name}`)"
        spec = by_name.get(name)
        if spec is None:
            raise BadRequest(f"{at}: the model has no {kind} named `{name}` (its {kind}s: "
                             f"{known})")
        if name in seen:
            raise BadRequest(f"{at}: `{name}` is given twice")
        seen.add(name)
        if tensor["datatype"] != spec.datatype:
            raise BadRequest(f"{at}: datatype {tensor['datatype']} does not match the "
                             f"model's {spec.datatype}")
        shape = list(tensor["shape"])
        if not spec.accepts_shape(shape):
            raise BadRequest(f"{at}: shape {shape} is not compatible with the model's "
                             f"{list(spec.shape)} (-1 is any size)")
        try:
            tensor_array(tensor, j)
        except BadRequest as exc:
            raise BadRequest(f"{at}: {exc.message}") from None
    missing = [n for n in by_name if n not in seen] if all_needed else []
    if missing:
        raise BadRequest(f"{where}: gives no value for the model's {kind} "
                         f"{', '.join(f'`{n}`' for n in missing)}; a probe sends every input")


def check_golden(golden: Sequence[Mapping[str, Any]], inputs: Sequence[TensorSpec],
                 outputs: Sequence[TensorSpec]) -> None:
    """BadRequest naming ``golden[i]`` and the mismatch when an example does not fit
    the signature ``inputs`` → ``outputs``."""
    for i, example in enumerate(golden):
        where = f"golden[{i}]"
        if not example.get("outputs"):
            raise BadRequest(f"{where}: list at least one expected output; an example "
                             "without outputs checks nothing")
        _check_tensors(where, "input", example["inputs"], inputs, all_needed=True)
        _check_tensors(where, "output", example["outputs"], outputs, all_needed=False)


def _worst(expected: np.ndarray, got: np.ndarray, off: np.ndarray) -> str:
    flat = np.flatnonzero(off)
    if expected.dtype.kind in "fiuc" and got.dtype.kind in "fiuc":
        errors = np.abs(got.astype(np.float64) - expected.astype(np.float64)).ravel()
        at = int(flat[np.argmax(errors[flat])]) if np.isfinite(errors[flat]).any() else int(
            flat[0])
    else:
        at = int(flat[0])
    index = list(np.unravel_index(at, expected.shape)) if expected.ndim else []
    want, have = (_plain(a.ravel()[at]) for a in (expected, got))
    return f"worst at {[int(i) for i in index]}: expected {want!r}, got {have!r}"


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def compare(tensor: Tensor, got: np.ndarray | None, got_datatype: str | None,
            atol: float, rtol: float) -> str | None:
    """Why the answer ``got`` does not match the golden ``tensor``; None when it does."""
    name = tensor["name"]
    if got is None:
        return f"output `{name}` is missing from the answer"
    if got_datatype is not None and got_datatype != tensor["datatype"]:
        return f"output `{name}`: expected datatype {tensor['datatype']}, got {got_datatype}"
    expected = tensor_array(tensor)
    if tuple(got.shape) != tuple(expected.shape):
        return (f"output `{name}`: expected shape {list(expected.shape)}, got "
                f"{list(got.shape)}")
    if expected.dtype.kind in "fc" or tensor["datatype"] in BINARY_ONLY or (
            expected.dtype.kind in "iu" and (atol or rtol)):
        off = ~np.isclose(got.astype(np.float64), expected.astype(np.float64),
                          atol=atol, rtol=rtol, equal_nan=True)
        rule = f"atol {atol:g} + rtol {rtol:g}"
    else:
        off = got != expected
        rule = "exact equality"
    count = int(np.count_nonzero(off))
    if not count:
        return None
    return (f"output `{name}`: {count} of {math.prod(expected.shape)} values differ beyond "
            f"{rule}; {_worst(expected, got, off)}")
