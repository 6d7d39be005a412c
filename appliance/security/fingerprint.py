"""Weights fingerprints: which registered version a model file found elsewhere came from.

The fingerprint hashes the *weights*, not the file: each stored tensor gets
``sha256(dtype | shape | little-endian bytes)``, and the fingerprint is the sha256 of
the sorted list of those digests. Names, order, producer, metadata, opset, storage
layout (ONNX ``raw_data`` or typed fields, IR ``.bin`` offsets) do not enter it, so a
re-saved or renamed copy has the same fingerprint; a fine-tuned, pruned, quantized or
noise-perturbed copy does not (see docs/security.md).

- ONNX: initializers, sparse initializers and constant attributes, in every graph,
  and the list attributes of ``ai.onnx.ml`` operators (where classic ML models keep
  their coefficients and trees);
- TFLite: the buffers tensors reference (each buffer once);
- OpenVINO IR: the ``.bin`` slice of each Const layer.

Fingerprints of registered versions live in the registry's ``fingerprints`` table
(migration 4; read and written through :mod:`appliance.registry.supply_chain`).
"""

from __future__ import annotations

import functools
import hashlib
import mmap
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from ..backend import ModelSource, detect_format
from ..errors import BadRequest
from ..registry import Registry, VersionRecord
from ..registry.supply_chain import (
    fingerprint_matches,
    fingerprints_of,
    store_fingerprint_rows,
)
from . import scan
from .crypto_store import MAGIC as ENCRYPTED_MAGIC
from .scan.onnx_wire import TensorSite, read_skeleton
from .scan.readers import BufferReader, ByteReader, FileReader, hash_range, read_range

if TYPE_CHECKING:  # packages imports this module when push records fingerprints
    from ..packages.manifest import Manifest

FORMATS = ("onnx", "tflite", "openvino")

@dataclass(frozen=True)
class Fingerprint:
    digest: str
    format: str
    tensors: int  # how many tensors went in; 0 means the model has no weights to match

    def to_dict(self) -> dict[str, Any]:
        return {"digest": self.digest, "format": self.format, "tensors": self.tensors}


def tensor_digest(dtype: str, shape: list[int] | tuple[int, ...], data: Any) -> str:
    """The digest of one tensor: its element type, its shape and its bytes."""
    h = hashlib.sha256(f"{dtype}|{','.join(str(int(d)) for d in shape)}|".encode())
    h.update(data)
    return h.hexdigest()


def combine(digests: list[str], fmt: str) -> Fingerprint:
    """The order-independent fingerprint of a multiset of tensor digests."""
    joined = "".join(f"{d}\n" for d in sorted(digests))
    return Fingerprint(hashlib.sha256(joined.encode()).hexdigest(), fmt, len(digests))


def _array_bytes(array: Any) -> Any:
    """The little-endian bytes of ``array`` as a buffer (no copy when already so)."""
    import numpy as np

    if array.dtype.hasobject:  # ONNX strings: length-prefixed, so b"ab","c" != b"a","bc"
        return b"".join(len(v).to_bytes(8, "little") + (v if isinstance(v, bytes)
                        else str(v).encode()) for v in array.ravel())
    array = np.ascontiguousarray(array)
    if array.dtype.itemsize > 1 and (array.dtype.byteorder == ">" or (
            array.dtype.byteorder == "=" and sys.byteorder == "big")):
        array = array.byteswap()  # the digest is over little-endian bytes everywhere
    return array.reshape(-1).view(np.uint8)


#: reads a file beside the primary one by name: its bytes, or a buffer over them (TFLite)
Reader = Callable[[str], Any]
#: reads a file beside the primary one by name, in bounded ranges (ONNX, OpenVINO IR)
Ranges = Callable[[str], ByteReader]


def range_digest(dtype: str, shape: list[int] | tuple[int, ...], reader: ByteReader,
                 offset: int, length: int) -> str:
    """:func:`tensor_digest` of bytes that lie in a file, hashed in bounded pieces."""
    h = hashlib.sha256(f"{dtype}|{','.join(str(int(d)) for d in shape)}|".encode())
    hash_range(h, reader, offset, length)
    return h.hexdigest()


def _onnx_tensor_digest(site: TensorSite, primary: ByteReader, read: Ranges) -> str:
    """One ONNX tensor's digest. Raw little-endian bytes (``raw_data`` or external
    data) are hashed where they lie in the file; typed fields and sub-byte types go
    through numpy, which gives the same bytes, so the storage choice does not change the
    digest."""
    import onnx
    from onnx import helper, numpy_helper

    tensor = onnx.TensorProto()
    tensor.ParseFromString(site.proto)
    elem = tensor.data_type
    bits = scan.onnx_bits(elem)
    whole_bytes = bits is not None and bits % 8 == 0 and elem != onnx.TensorProto.STRING
    where: tuple[ByteReader, int, int] | None = None
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        entries = {e.key: e.value for e in tensor.external_data}
        blob = read(entries.get("location", ""))
        offset = int(entries.get("offset", 0))
        length = int(entries["length"]) if "length" in entries else blob.size - offset
        if offset < 0 or length < 0 or offset + length > blob.size:
            raise BadRequest(f"tensor {tensor.name!r}: external data range "
                             f"{offset}..{offset + length} is past the end of its file")
        where = (blob, offset, length)
    elif site.raw is not None:  # raw_data, left in the file by the skeleton
        where = (primary, *site.raw)
    elif whole_bytes and tensor.HasField("raw_data"):
        dtype = helper.tensor_dtype_to_np_dtype(elem).name
        return tensor_digest(dtype, list(tensor.dims), tensor.raw_data)
    if where is not None and whole_bytes:
        dtype = helper.tensor_dtype_to_np_dtype(elem).name
        return range_digest(dtype, list(tensor.dims), *where)
    if where is not None:  # sub-byte or string data: numpy unpacks it, in memory
        copy = onnx.TensorProto()
        copy.CopyFrom(tensor)
        copy.data_location = onnx.TensorProto.DEFAULT
        del copy.external_data[:]
        copy.raw_data = read_range(*where)
        tensor = copy
    array = numpy_helper.to_array(tensor)
    return tensor_digest(array.dtype.name, array.shape, _array_bytes(array))


def _onnx_digests(primary: ByteReader, read: Ranges) -> Iterator[str]:
    """The tensors of the model's skeleton (:mod:`.scan.onnx_wire`): the model is parsed
    without its tensors' bytes, which are hashed in place."""
    import onnx

    skeleton = read_skeleton(primary, keep_typed=True)
    model = onnx.ModelProto()
    model.ParseFromString(skeleton.model)
    for site in skeleton.tensors:
        yield _onnx_tensor_digest(site, primary, read)
    yield from _onnx_ml_digests(model)


def _onnx_ml_digests(model: Any) -> Iterator[str]:
    """Classic ML operators (ai.onnx.ml: linear models, tree ensembles, SVMs) keep their
    learned parameters in list attributes, not tensors: count those as weights too."""
    import numpy as np

    for node in scan.onnx_nodes(model):
        if node.domain != "ai.onnx.ml":
            continue
        for attr in node.attribute:
            if attr.floats:
                dtype, data = "float32", np.asarray(attr.floats, "<f4").tobytes()
            elif attr.ints:
                dtype, data = "int64", np.asarray(attr.ints, "<i8").tobytes()
            elif attr.strings:
                dtype, data = "bytes", _array_bytes(np.asarray(list(attr.strings), object))
            else:
                continue
            count = len(attr.floats) or len(attr.ints) or len(attr.strings)
            yield tensor_digest(f"{node.op_type}.{attr.name}:{dtype}", [count], data)


def _tflite_digests(primary: Any, read: Reader) -> Iterator[str]:
    s = scan.tflite_schema()
    if not s.Model.ModelBufferHasIdentifier(primary, 0):
        raise BadRequest("not a TFLite model (no TFL3 identifier)")
    model = s.Model.GetRootAs(primary, 0)
    type_names = {v: k.lower() for k, v in vars(s.TensorType).items() if not k.startswith("_")}
    external = {model.ExternalBuffers(i).Id(): model.ExternalBuffers(i)
                for i in range(model.ExternalBuffersLength())}
    seen: set[tuple[str, int]] = set()
    for g in range(model.SubgraphsLength()):
        sub = model.Subgraphs(g)
        for t in range(sub.TensorsLength()):
            tensor = sub.Tensors(t)
            dims = [int(d) for d in tensor.ShapeAsNumpy()] if tensor.ShapeLength() else []
            key = (("ext", tensor.ExternalBuffer()) if tensor.ExternalBuffer()
                   else ("buf", tensor.Buffer()))
            if key in seen or key == ("buf", 0):
                continue
            seen.add(key)
            if key[0] == "ext":
                ref = external[key[1]]
                blob = read(model.ExternalBufferGroups(ref.Group()).Name().decode())
                payload = blob[ref.Offset():ref.Offset() + ref.Length()]
            else:
                buf = model.Buffers(key[1])
                if buf.Offset() > 1:  # large models keep buffers after the flatbuffer
                    payload = primary[buf.Offset():buf.Offset() + buf.Size()]
                elif buf.DataLength():
                    payload = buf.DataAsNumpy().tobytes()
                else:
                    continue  # a tensor computed at run time, not a weight
            yield tensor_digest(type_names.get(tensor.Type(), str(tensor.Type())), dims,
                                payload)


def _ir_digests(primary: ByteReader, read: Ranges, name: str) -> Iterator[str]:
    consts = list(scan.ir_constants(scan.parse_ir_bytes(read_range(primary, 0,
                                                                   primary.size))))
    if not consts:
        return
    weights = read(str(PurePosixPath(name).with_suffix(".bin")))
    for const, etype, shape, offset, size in consts:
        if offset < 0 or size < 0 or offset + size > weights.size:
            raise BadRequest(f"constant {const!r} reads past the end of the weights file")
        yield range_digest(etype, shape, weights, offset, size)


def _digests(fmt: str, name: str, primary: Any, read: Reader) -> list[str]:
    if fmt == "onnx":
        return list(_onnx_digests(primary, read))
    if fmt == "tflite":
        return list(_tflite_digests(primary, read))
    return list(_ir_digests(primary, read, name))


def _fingerprint(fmt: str, name: str, primary: Any, read: Reader) -> Fingerprint:
    try:
        return combine(_digests(fmt, name, primary, read), fmt)
    except BadRequest as exc:
        raise BadRequest(f"cannot fingerprint {name}: {exc.message}") from None
    except ImportError as exc:
        raise BadRequest(f"cannot fingerprint {name}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - parsers of damaged files fail in many ways
        raise BadRequest(f"{name} is not a readable {fmt} model: {exc!r}") from None


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise BadRequest(f"weights fingerprints cover {', '.join(FORMATS)} models, "
                         f"not {fmt!r}")


def fingerprint_file(path: Path, fmt: str | None = None) -> Fingerprint:
    """The weights fingerprint of the model file ``path`` (IR: the ``.xml``, its ``.bin``
    beside it). Files it refers to (external data) must lie beside it, not through a
    symlink or ``..``."""
    if not path.is_file():
        raise BadRequest(f"{path} is not a file: give the model file (.onnx, .tflite, or "
                         "OpenVINO .xml with its .bin beside it)")
    try:
        fmt = fmt or detect_format(path)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    _check_format(fmt)
    base = path.parent

    def inside(location: str) -> Path:
        why = scan.outside_reason(base, base, location)
        if why:
            raise BadRequest(f"the file it refers to, {location!r}, {why}")
        return base / location

    if fmt == "tflite":  # the flatbuffer is read in place from a map
        return _fingerprint(fmt, path.name, _map(path),
                            functools.cache(lambda location: _map(inside(location))))
    with ExitStack() as stack:
        @functools.cache
        def ranges(location: str) -> ByteReader:
            return stack.enter_context(FileReader(inside(location)))

        return _fingerprint(fmt, path.name, stack.enter_context(FileReader(path)), ranges)


def _map(path: Path) -> Any:
    """A read-only memory map of ``path`` (b"" when empty), unmapped when dropped: not
    closed explicitly, since numpy views of it may outlive an exception's unwinding."""
    with path.open("rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return b""
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def fingerprint_source(source: ModelSource) -> Fingerprint:
    """The weights fingerprint of a stored model (decrypted in memory when encrypted)."""
    read_buffer = getattr(source, "read_file_buffer", None)
    if read_buffer is None:
        return fingerprint_file(source.path, source.format)
    _check_format(source.format)
    if source.format == "tflite":
        read = functools.cache(read_buffer)
        return _fingerprint(source.format, source.path.name, read(source.path.name), read)
    ranges = functools.cache(lambda name: BufferReader(read_buffer(name)))
    return _fingerprint(source.format, source.path.name, ranges(source.path.name), ranges)


def package_fingerprints(root: Path, manifest: Manifest) -> dict[str, Fingerprint]:
    """Fingerprints of a package's variants by precision, from its (plaintext) files;
    variants in other formats, or whose files are encrypted, are left out."""
    prints = {}
    for variant in manifest.variants:
        path = root / variant.primary
        with path.open("rb") as f:
            encrypted = f.read(len(ENCRYPTED_MAGIC)) == ENCRYPTED_MAGIC
        if variant.format in FORMATS and not encrypted:
            prints[variant.precision] = fingerprint_file(path, variant.format)
    return prints


def store_fingerprints(registry: Registry, model: str, version: str,
                       prints: Mapping[str, Fingerprint]) -> None:
    """Record ``prints`` (by precision) for one version in one transaction; a model
    without weights is not recorded (it would match every other weightless model)."""
    store_fingerprint_rows(registry.db, model, version,
                           [(precision, fp.digest, fp.format, fp.tensors)
                            for precision, fp in prints.items() if fp.tensors])


def record_fingerprint(registry: Registry, record: VersionRecord, *,
                       sources: Mapping[str, Path] | None = None) -> dict[str, Fingerprint]:
    """Fingerprint every variant of ``record`` and store the fingerprints.

    ``sources`` maps a precision to its primary file outside the store (what add/push
    just read); without it the stored artifact files are read. Variants in formats
    without a fingerprint (plugin formats) are skipped.
    """
    prints: dict[str, Fingerprint] = {}
    for variant in record.all_variants():
        if variant.format not in FORMATS:
            continue
        path = (sources or {}).get(variant.precision)
        if path is not None:
            prints[variant.precision] = fingerprint_file(path, variant.format)
        elif hasattr(registry, "model_source"):  # the store may encrypt at rest
            prints[variant.precision] = fingerprint_source(registry.model_source(variant))
        else:
            prints[variant.precision] = fingerprint_file(registry.artifact_path(variant),
                                                         variant.format)
    store_fingerprints(registry, record.model, record.version, prints)
    return prints


def find_fingerprint(registry: Registry, fp: Fingerprint) -> list[dict[str, Any]]:
    """Registered variants with the fingerprint ``fp``; ``stage`` is None for a version
    deleted since (its fingerprint is kept: a copy of deleted weights is still news)."""
    if not fp.tensors:
        return []
    return fingerprint_matches(registry.db, fp.digest, fp.format)


def version_fingerprints(registry: Registry, model: str, version: str) -> dict[str, str]:
    """The recorded fingerprint digests of one version, by precision."""
    return fingerprints_of(registry.db, model, version)
