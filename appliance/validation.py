"""Check a request against a model's signature before any tensor data is decoded.

The checks read only what the request *declares* (input names, datatypes, shapes and
the requested outputs), so a hostile request is refused before anything proportional
to its shapes is computed or allocated: each check is linear in the request and bounded
by the signature (number of inputs and outputs, rank). Decoding then only has to see
that the data fits the declared shape (:mod:`appliance.protocol.tensors`).

Every mismatch is a :class:`SignatureMismatch` (400) that names the tensor and says what
was expected, so a caller can fix the request without reading server logs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .errors import SignatureMismatch
from .protocol.tensors import check_datatype
from .protocol.types import RequestInput, RequestOutput
from .signature import TensorSpec

#: shapes longer than this are described by their rank only, not printed
_PRINTABLE_RANK = 16


def _describe(spec: TensorSpec) -> str:
    return f"{spec.name} ({spec.datatype} {list(spec.shape)})"


def _inputs_of(model: str, specs: Mapping[str, TensorSpec]) -> str:
    return f"model {model!r} takes: " + ", ".join(_describe(s) for s in specs.values())


def check_declared_inputs(model: str, specs: Mapping[str, TensorSpec],
                          inputs: Sequence[RequestInput]) -> None:
    """Names, datatypes and shapes the request declares, against the model's inputs."""
    if len(inputs) > len(specs):
        raise SignatureMismatch(f"the request has {len(inputs)} inputs but "
                                + _inputs_of(model, specs))
    seen: set[str] = set()
    for inp in inputs:
        spec = specs.get(inp.name)
        if spec is None:
            raise SignatureMismatch(f"model {model!r} has no input named {inp.name!r}; its "
                                    "inputs are: " + ", ".join(_describe(s)
                                                               for s in specs.values()))
        if inp.name in seen:
            raise SignatureMismatch(f"input '{inp.name}' appears more than once in the request")
        seen.add(inp.name)
        if inp.datatype != spec.datatype:
            check_datatype(inp.datatype, inp.name)
            raise SignatureMismatch(f"input {inp.name!r} must have datatype {spec.datatype}, "
                                    f"got {inp.datatype}")
        _check_shape(spec, inp.shape)
    if len(seen) < len(specs):
        missing = next(name for name in specs if name not in seen)
        raise SignatureMismatch(f"input {missing!r} is missing; " + _inputs_of(model, specs))


def _check_shape(spec: TensorSpec, shape: list[int]) -> None:
    if len(shape) != len(spec.shape):
        got = (str(shape) if len(shape) <= _PRINTABLE_RANK
               else f"a shape of {len(shape)} dimensions")
        raise SignatureMismatch(
            f"input {spec.name!r} must have shape {list(spec.shape)} (rank {len(spec.shape)}, "
            f"-1 = any size), got {got}")
    if any(dim < 0 for dim in shape):
        raise SignatureMismatch(
            f"input '{spec.name}' has shape {shape}: dimensions must not be negative")
    if not spec.accepts_shape(shape):
        raise SignatureMismatch(
            f"input {spec.name!r} must have shape {list(spec.shape)} (-1 = any size), "
            f"got {shape}")


def check_requested_outputs(model: str, specs: Mapping[str, TensorSpec],
                            outputs: Sequence[RequestOutput] | None) -> None:
    """The outputs a request asks for exist, each once, and are no more than the model has."""
    if not outputs:
        return
    if len(outputs) > len(specs):
        raise SignatureMismatch(f"the request asks for {len(outputs)} outputs but model "
                                f"{model!r} has {len(specs)}: {', '.join(specs)}")
    seen: set[str] = set()
    for out in outputs:
        if out.name not in specs:
            raise SignatureMismatch(f"model {model!r} has no output named {out.name!r}; its "
                                    f"outputs are: {', '.join(specs)}")
        if out.name in seen:
            raise SignatureMismatch(f"output '{out.name}' is requested more than once")
        seen.add(out.name)
