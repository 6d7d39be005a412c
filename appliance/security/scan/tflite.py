"""TFLite models: custom operators not on ``policy.tflite_custom_ops`` (they need native
code the box does not ship), tensors declared over ``policy.max_tensor_bytes``, buffers
pointing past the end of the file, and external buffer files outside the package.

The flatbuffer schema comes from ``ai_edge_litert``, imported when needed; when it is
missing the file gets a ``policy.missing_parser`` finding.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path
from typing import Any

from .paths import outside_reason
from .report import ScanPolicy, ScanReport, declared_bytes, missing_parser

TFLITE_CUSTOM = 32  # BuiltinOperator.CUSTOM


def tflite_schema() -> Any:
    """The generated TFLite flatbuffer schema module (``ai_edge_litert``)."""
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def tflite_bits(schema: Any, tensor_type: int) -> int | None:
    """Bits per element of a TFLite ``TensorType`` (None when unknown)."""
    names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    name = names.get(tensor_type, "")
    if name in ("INT4", "UINT4"):
        return 4
    if name == "INT2":
        return 2
    digits = "".join(ch for ch in name if ch.isdigit())
    if name.startswith(("FLOAT8", "BOOL", "STRING")):
        return 8
    return int(digits) if digits else None


def scan_tflite(root: Path, rel: str, report: ScanReport, policy: ScanPolicy) -> None:
    """Add the findings for the TFLite model at ``root / rel`` to ``report``."""
    try:
        s = tflite_schema()
    except ImportError:
        missing_parser(report, rel, policy, "ai-edge-litert")
        return
    path = root / rel
    data = _map(path)
    try:
        if not s.Model.ModelBufferHasIdentifier(data, 0):
            raise ValueError("no TFL3 identifier")
        model = s.Model.GetRootAs(data, 0)
        _check_tflite(s, model, len(data), root, path, rel, report, policy)
    except Exception as exc:  # noqa: BLE001 - a damaged flatbuffer fails in many ways
        report.add("refuse", rel, "parse", f"is not a readable TFLite model: {exc!r}")


def _map(path: Path) -> Any:
    """A read-only map of ``path`` (b"" when empty): the flatbuffer is read in place, so
    only the pages of the tables the checks visit are read, not the weights. Not closed
    explicitly: numpy views of it (shapes) may outlive the checks' unwinding."""
    with path.open("rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return b""
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def _check_tflite(s: Any, model: Any, file_size: int, root: Path, path: Path, rel: str,
                  report: ScanReport, policy: ScanPolicy) -> None:
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        if max(code.BuiltinCode(), code.DeprecatedBuiltinCode()) != TFLITE_CUSTOM:
            continue
        name = (code.CustomCode() or b"").decode("utf-8", "replace")
        if name not in policy.tflite_custom_ops:
            report.add("refuse", rel, "custom-op", f"custom operator {name!r} is not on the "
                       "allowlist: custom ops need native code the box does not ship")
    limit = policy.max_tensor_bytes
    for g in range(model.SubgraphsLength()):
        sub = model.Subgraphs(g)
        for t in range(sub.TensorsLength()):
            tensor = sub.Tensors(t)
            dims = [int(d) for d in tensor.ShapeAsNumpy()] if tensor.ShapeLength() else []
            size = declared_bytes(dims, tflite_bits(s, tensor.Type()))
            if size is not None and size > limit:
                name = (tensor.Name() or b"").decode("utf-8", "replace")
                report.add("refuse", rel, "tensor-size", f"tensor {name!r} declares {dims}, "
                           f"{size} bytes, over the limit of {limit}")
    for b in range(model.BuffersLength()):
        buf = model.Buffers(b)
        if buf.Offset() > 1 and buf.Offset() + buf.Size() > file_size:
            report.add("refuse", rel, "tensor-size", f"buffer {b} points past the end of "
                       "the file")
    for g in range(model.ExternalBufferGroupsLength()):
        location = (model.ExternalBufferGroups(g).Name() or b"").decode("utf-8", "replace")
        why = outside_reason(root, path.parent, location)
        if why:
            report.add("refuse", rel, "external-data", f"external buffer file {location!r} "
                       f"{why}")
