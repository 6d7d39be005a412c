"""ONNX models: operators from unlisted domains (custom ops load native code), tensors
declared over ``policy.max_tensor_bytes`` (initializers, constants, graph inputs and
outputs with static shapes), and external data whose location leaves the package.

The model is read without its tensors' data (:mod:`.onnx_wire`): memory stays a few
megabytes whatever the file's size. The ``onnx`` package is imported when needed
(absolute ``import onnx``: this module's name shadows nothing); when it is missing the
file gets a ``policy.missing_parser`` finding.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .onnx_wire import read_skeleton
from .paths import outside_reason
from .readers import FileReader
from .report import ScanPolicy, ScanReport, declared_bytes, missing_parser


def onnx_graphs(model: Any) -> Iterator[Any]:
    """The main graph and every subgraph (If/Loop/Scan bodies), depth first."""
    def walk(graph: Any) -> Iterator[Any]:
        yield graph
        for node in graph.node:
            for attr in node.attribute:
                if attr.HasField("g"):
                    yield from walk(attr.g)
                for sub in attr.graphs:
                    yield from walk(sub)
    yield from walk(model.graph)


def onnx_nodes(model: Any) -> Iterator[Any]:
    """Every node: of all graphs, and of the model's local functions."""
    for graph in onnx_graphs(model):
        yield from graph.node
    for function in model.functions:
        yield from function.node


def onnx_tensors(model: Any) -> Iterator[Any]:
    """Every stored tensor: initializers, sparse initializers' parts and constant
    attributes (Constant nodes), in all graphs and functions."""
    for graph in onnx_graphs(model):
        yield from graph.initializer
        for sparse in graph.sparse_initializer:
            yield sparse.values
            yield sparse.indices
    for node in onnx_nodes(model):
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            for sparse in [*([attr.sparse_tensor] if attr.HasField("sparse_tensor") else []),
                           *attr.sparse_tensors]:
                yield sparse.values
                yield sparse.indices


def onnx_bits(elem_type: int) -> int | None:
    """Bits per element of an ONNX TensorProto data type (None for undefined)."""
    from onnx import TensorProto, helper

    try:
        name = TensorProto.DataType.Name(elem_type)
    except ValueError:  # a number this onnx does not know
        return None
    if name in ("INT4", "UINT4", "FLOAT4E2M1"):
        return 4
    if name in ("INT2", "UINT2"):
        return 2
    if name == "STRING":
        return 8  # at least a byte each
    if name == "UNDEFINED":
        return None
    try:
        return int(helper.tensor_dtype_to_np_dtype(elem_type).itemsize) * 8
    except (KeyError, TypeError, ValueError):
        return None


def read_onnx(path: Path) -> Any:
    """The ModelProto in ``path`` without its tensors' data (raw and typed fields left
    out, external data not loaded): :func:`~.onnx_wire.read_skeleton` reads the file in
    bounded blocks, so a 1 GB model parses in a few megabytes."""
    import onnx

    model = onnx.ModelProto()
    with FileReader(path) as reader:
        model.ParseFromString(read_skeleton(reader).model)
    return model


def scan_onnx(root: Path, rel: str, report: ScanReport, policy: ScanPolicy) -> None:
    """Add the findings for the ONNX model at ``root / rel`` to ``report``."""
    try:
        import onnx
    except ImportError:
        missing_parser(report, rel, policy, "onnx")
        return
    path = root / rel
    try:
        model = read_onnx(path)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types
        report.add("refuse", rel, "parse", f"is not a readable ONNX model: {exc}")
        return
    limit = policy.max_tensor_bytes
    for tensor in onnx_tensors(model):
        size = declared_bytes(list(tensor.dims), onnx_bits(tensor.data_type))
        if size is not None and size > limit:
            report.add("refuse", rel, "tensor-size", f"tensor {tensor.name!r} declares "
                       f"{size} bytes, over the limit of {limit}")
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            entries = {e.key: e.value for e in tensor.external_data}
            location = entries.get("location", "")
            why = outside_reason(root, path.parent, location)
            if why:
                report.add("refuse", rel, "external-data", f"external data location "
                           f"{location!r} {why}")
    for kind, values in (("input", model.graph.input), ("output", model.graph.output)):
        for vi in values:
            ttype = vi.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in ttype.shape.dim]
            size = declared_bytes(dims, onnx_bits(ttype.elem_type)) \
                if ttype.HasField("shape") else None
            if size is not None and size > limit:
                report.add("refuse", rel, "tensor-size", f"graph {kind} {vi.name!r} declares "
                           f"{dims}, {size} bytes, over the limit of {limit}")
    functions = {(f.domain, f.name) for f in model.functions}
    allowed = policy.onnx_domains
    for node in onnx_nodes(model):
        if node.domain not in allowed and (node.domain, node.op_type) not in functions:
            report.add("refuse", rel, "custom-op", f"operator {node.op_type!r} of domain "
                       f"{node.domain!r} is not on the allowlist ({', '.join(sorted(allowed))})"
                       ": custom ops load native code")
    used = {n.domain for n in onnx_nodes(model)} | {d for d, _ in functions}
    for opset in model.opset_import:
        if opset.domain not in allowed and opset.domain not in used:
            report.add("warn", rel, "custom-op", f"imports the unlisted domain "
                       f"{opset.domain!r} (no node uses it)")
