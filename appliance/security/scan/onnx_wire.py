"""An ONNX model's structure without its tensors' data, read from the protobuf wire format.

``onnx.load`` (and ``ModelProto.ParseFromString``) copies every tensor's bytes into the
message: parsing a 1 GB model takes 1 GB. :func:`read_skeleton` walks the file through a
:class:`~.readers.ByteReader` instead and rebuilds the ``ModelProto`` bytes with each
tensor's data fields (``raw_data`` and the typed ``*_data`` fields) longer than
``threshold`` left out, skipping over them without reading them. What remains (graphs,
nodes, attributes, tensor names, types, shapes, external-data entries) parses with
``onnx`` in a few megabytes; each left-out ``raw_data`` is reported as its place in the
file, so its bytes can be hashed where they lie.

Only the fields on a path to a ``TensorProto`` are descended into (field numbers of
``onnx.proto``)::

    ModelProto.graph(7) .training_info(20) .functions(25)
    TrainingInfoProto.initialization(1) .algorithm(2)
    GraphProto.node(1) .initializer(5) .sparse_initializer(15)
    NodeProto.attribute(5)
    AttributeProto.t(5) .g(6) .tensors(10) .graphs(11) .sparse_tensor(22) .sparse_tensors(23)
    FunctionProto.node(7) .attribute_proto(11)
    SparseTensorProto.values(1) .indices(2)

everything else is copied as it is. :attr:`Skeleton.tensors` lists the tensors that
:func:`~appliance.security.scan.onnx.onnx_tensors` yields for the parsed model
(initializers, sparse initializers and constant attributes of the main graph and its
subgraphs, and of the model's functions' nodes), in file order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .readers import ByteReader

SCHEMA: dict[str, dict[int, str]] = {
    "model": {7: "graph", 20: "training", 25: "function"},
    "training": {1: "graph", 2: "graph"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse",
                  23: "sparse"},
    "function": {7: "node", 11: "attribute"},
    "sparse": {1: "tensor", 2: "tensor"},
}
RAW_DATA = 9
#: float_data, int32_data, string_data, int64_data, double_data, uint64_data
TYPED_DATA = frozenset({4, 5, 6, 7, 10, 11})
#: nesting deeper than protobuf's own default limit is refused
MAX_DEPTH = 100


@dataclass(frozen=True)
class TensorSite:
    """One tensor of the model: its ``TensorProto`` bytes without the data fields that
    were left out, and where its ``raw_data`` lies in the file when that was left out."""

    proto: bytes
    raw: tuple[int, int] | None  # (offset, length)
    stripped: bool  # some data field was left out


@dataclass
class Skeleton:
    """The rebuilt ``ModelProto`` bytes and the tensors that count as the model's."""

    model: bytes
    tensors: list[TensorSite] = field(default_factory=list)


def _varint(reader: ByteReader, pos: int, end: int) -> tuple[int, int]:
    head = reader.read(pos, min(10, end - pos))
    value = shift = 0
    for i, byte in enumerate(head):
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos + i + 1
        shift += 7
    raise ValueError(f"truncated or overlong varint at byte {pos}")


def encode_varint(value: int) -> bytes:
    """``value`` as a protobuf varint."""
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


class _Walk:
    def __init__(self, reader: ByteReader, threshold: int, keep_typed: bool) -> None:
        self.reader, self.threshold, self.keep_typed = reader, threshold, keep_typed
        self.tensors: list[TensorSite] = []

    def message(self, start: int, end: int, kind: str, counted: bool, sub: bool,
                depth: int) -> tuple[bytes, bool]:
        """The rebuilt bytes of the message at ``start .. end``, and whether anything in
        it was left out. ``counted``: its tensors are the model's; ``sub``: so are those
        of its nodes' subgraphs."""
        if depth > MAX_DEPTH:
            raise ValueError(f"messages nested more than {MAX_DEPTH} deep")
        reader, children = self.reader, SCHEMA.get(kind, {})
        out: list[bytes] = []
        run = pos = start  # run: where the bytes still to be copied as they are begin
        changed, raw = False, None
        while pos < end:
            field_start = pos
            key, pos = _varint(reader, pos, end)
            number, wire = key >> 3, key & 7
            if wire == 0:
                _, pos = _varint(reader, pos, end)
            elif wire == 1:
                pos += 8
            elif wire == 5:
                pos += 4
            elif wire == 2:
                length, body = _varint(reader, pos, end)
                pos = body + length
                if pos > end:
                    break
                if kind == "tensor" and self._leave_out(number, length):
                    out.append(reader.read(run, field_start - run))
                    run, changed = pos, True
                    if number == RAW_DATA:
                        raw = (body, length)
                    continue
                if kind == "tensor" and number == RAW_DATA:
                    raw = None  # a later raw_data kept inline is the one that counts
                child = children.get(number)
                if child is not None:
                    rebuilt, stripped = self.message(
                        body, pos, child, *self._flags(kind, child, counted, sub), depth + 1)
                    if stripped:
                        out += [reader.read(run, field_start - run),
                                encode_varint(key), encode_varint(len(rebuilt)), rebuilt]
                        run, changed = pos, True
            else:
                raise ValueError(f"wire type {wire} at byte {field_start} is not used by ONNX")
        if pos > end:
            raise ValueError(f"a field at byte {field_start} runs past the end of its message "
                             f"(byte {end}): the file is truncated or damaged")
        out.append(reader.read(run, end - run))
        rebuilt = b"".join(out)
        if kind == "tensor" and counted:
            self.tensors.append(TensorSite(rebuilt, raw, changed))
        return rebuilt, changed

    def _leave_out(self, number: int, length: int) -> bool:
        if number == RAW_DATA:
            return length > self.threshold
        return number in TYPED_DATA and not self.keep_typed and length > self.threshold

    @staticmethod
    def _flags(kind: str, child: str, counted: bool, sub: bool) -> tuple[bool, bool]:
        if kind == "model":  # the main graph and functions count, training graphs do not
            return child != "training", child == "graph"
        if kind == "training" or (kind == "function" and child == "attribute"):
            return False, False  # training graphs; a function's attribute defaults
        if kind == "function":
            return counted, False  # its nodes' constants count, their subgraphs do not
        if kind == "attribute" and child == "graph":
            return counted and sub, counted and sub
        return counted, sub


def read_skeleton(reader: ByteReader, *, threshold: int = 0,
                  keep_typed: bool = False) -> Skeleton:
    """The model read by ``reader`` with its tensors' data fields over ``threshold``
    bytes left out (``keep_typed``: leave the typed ``*_data`` fields in, so that
    numpy can still convert tensors stored that way). ValueError when the wire format
    is damaged."""
    walk = _Walk(reader, threshold, keep_typed)
    model, _ = walk.message(0, reader.size, "model", True, True, 0)
    return Skeleton(model, walk.tensors)
