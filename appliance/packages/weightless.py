"""The load check of a large ONNX variant without its weights: its graph, loaded by the
backend, with the large weights as inputs.

Loading a model to check it (``models add``/``push``, step 5) holds it in memory, about
three times over for ONNX Runtime on bytes: a 1 GB package needed 3 GB, enough to take
down a 4 GB box. A variant whose files pass :data:`LOAD_CHECK_BYTES` is therefore loaded
as its *weightless twin*: the staged (encrypted) model is read chunk by chunk without its
tensors' data (:func:`~appliance.security.scan.onnx_wire.read_skeleton`), and every
initializer or ``Constant`` of the main graph whose data was left out (over
:data:`INLINE_BYTES`) or is external becomes a graph input of the same type and shape.
The backend parses that graph, checks its operators and types and reports its signature,
minus those inputs: what a full load reports, in a few megabytes. The weights
themselves are checked by size here and by sha256 in the steps before; a variant that
cannot be twinned (large tensors in subgraphs or functions), or whose twin the backend
refuses, gets the full load.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..backend import ModelSource
from ..errors import InvalidModelFile
from ..security.scan import onnx_bits, onnx_tensors
from ..security.scan.onnx_wire import Skeleton, read_skeleton
from ..security.scan.readers import ByteReader
from ..security.scan.report import declared_bytes

log = logging.getLogger(__name__)
#: a variant whose files total more than this is checked through its weightless twin
LOAD_CHECK_BYTES = 64 << 20
#: tensor data up to this size stays in the twin (shapes, scales, small constants)
INLINE_BYTES = 64 << 10


@dataclass(frozen=True)
class WeightlessSource(ModelSource):
    """A model source whose primary file reads as the twin's bytes. ``encrypted`` so
    that no backend reads the file by path (it may be ciphertext; it has the weights)
    or caches a compiled copy of the twin."""

    encrypted: ClassVar[bool] = True

    twin: bytes = field(default=b"", repr=False)

    def read_file_bytes(self, name: str) -> bytes:
        if name == self.path.name:
            return self.twin
        raise InvalidModelFile(f"{name}: the weightless load check reads the graph only")


def _missing(tensor: Any) -> bool:
    """Whether ``tensor``'s data is not in the twin: left out, or in an external file."""
    import onnx

    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        return True
    if tensor.HasField("raw_data"):
        return False
    typed = (tensor.float_data, tensor.int32_data, tensor.string_data, tensor.int64_data,
             tensor.double_data, tensor.uint64_data)
    return math.prod(tensor.dims) > 0 and not any(len(values) for values in typed)


def _check_sizes(skeleton: Skeleton) -> None:
    """A left-out ``raw_data`` holds as many bytes as its tensor declares (what a full
    load would check when it read them)."""
    import onnx

    for site in skeleton.tensors:
        if site.raw is None:
            continue
        tensor = onnx.TensorProto()
        tensor.ParseFromString(site.proto)
        want = declared_bytes(list(tensor.dims), onnx_bits(tensor.data_type))
        if want is not None and want != site.raw[1]:
            raise InvalidModelFile(f"tensor {tensor.name!r} declares {want} bytes of data "
                                   f"but holds {site.raw[1]}")


def weightless_twin(reader: ByteReader) -> tuple[bytes, set[str]] | None:
    """The twin of the ONNX model read by ``reader`` and the names of the inputs standing
    in for its weights; None when a tensor whose data was left out is not one the twin
    can replace (then only a full load can check the model)."""
    import onnx
    from onnx import helper

    try:
        skeleton = read_skeleton(reader, threshold=INLINE_BYTES)
        model = onnx.ModelProto()
        model.ParseFromString(skeleton.model)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types
        raise InvalidModelFile(f"not a readable ONNX model: {exc}") from None
    _check_sizes(skeleton)
    graph, promoted = model.graph, set()
    declared = {vi.name for vi in graph.input}

    def promote(name: str, tensor: Any) -> None:
        promoted.add(name)
        if name not in declared:
            graph.input.append(helper.make_tensor_value_info(name, tensor.data_type,
                                                             list(tensor.dims)))

    kept = []
    for tensor in graph.initializer:
        if _missing(tensor):
            promote(tensor.name, tensor)
        else:
            kept.append(tensor)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = []
    for node in graph.node:
        value = [a.t for a in node.attribute if a.name == "value" and a.HasField("t")]
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and value \
                and _missing(value[0]) and len(node.output) == 1:
            promote(node.output[0], value[0])
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    if any(_missing(t) for t in onnx_tensors(model)):
        return None
    return model.SerializeToString(), promoted
