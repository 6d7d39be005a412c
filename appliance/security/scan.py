"""Security review of a model package before anything of it is stored or loaded.

:func:`scan_package` looks at every file of a package (a directory, a ``.tar``, or one
model file) and returns a :class:`ScanReport` of findings, each ``refuse`` or ``warn``:

- pickles (they run code when loaded): a pickle header (protocol 2-5), a protocol 0/1
  stream that imports a callable, a pickle compressed with gzip/zlib/bz2/xz/lzma (joblib),
  a zip holding ``data.pkl`` (PyTorch checkpoints) or pickles, a ``.npy`` of objects,
  and the pickle-only suffixes (``.pkl``, ``.joblib``, ``.pt``, ...);
- files that reach outside the package: symlinks, archive members with absolute paths
  or ``..``, ONNX external data and TFLite external buffers whose location is absolute,
  has ``..``, goes through a symlink or resolves outside the package;
- operators the runtime would load from native code we did not ship: ONNX node domains
  and TFLite custom ops not on the policy's allowlist;
- declared tensors over ``policy.max_tensor_bytes`` (ONNX initializers, constants and
  graph inputs/outputs with static shapes; TFLite tensors; OpenVINO IR constants), which
  would make a backend allocate that much on load or on the first request.

A model file that cannot be parsed is refused: what cannot be read cannot be checked. A
file in the appliance's at-rest encryption format is only warned about (no key here).
The parsers (``onnx``, ``ai_edge_litert``) are imported when needed; a missing one is a
finding of ``policy.missing_parser`` severity.
"""

from __future__ import annotations

import bz2
import io
import lzma
import math
import mmap
import os
import pickletools
import re
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Literal

from ..errors import BadRequest
from .crypto_store import MAGIC as ENCRYPTED_MAGIC

Severity = Literal["refuse", "warn"]
DEFAULT_ONNX_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})
PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".joblib", ".pt", ".pth", ".ckpt", ".dill"})
MODEL_SUFFIXES = frozenset({".onnx", ".tflite", ".xml"})
_HEAD = 64 << 10  # bytes read from each file for the content checks
_CALL_OPS = frozenset({"REDUCE", "OBJ", "NEWOBJ", "NEWOBJ_EX", "BUILD", "INST"})
_STRING_OPS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE",
                         "SHORT_BINSTRING", "BINSTRING", "STRING"})
_MEMO_OPS = frozenset({"MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT", "FRAME"})
_IMPORT_ARG = re.compile(r"[A-Za-z_][\w.]* [A-Za-z_][\w.]*\Z")  # GLOBAL's "module name"
_DOTTED = re.compile(r"[A-Za-z_][\w.]*\Z")
_ZIP_MEMBER_LIMIT = 10_000
TFLITE_CUSTOM = 32  # BuiltinOperator.CUSTOM
# element bits by OpenVINO IR element_type (sub-byte types pack several per byte)
_IR_BITS = {"f64": 64, "f32": 32, "f16": 16, "bf16": 16, "i64": 64, "i32": 32, "i16": 16,
            "i8": 8, "u64": 64, "u32": 32, "u16": 16, "u8": 8, "boolean": 8, "u4": 4, "i4": 4,
            "nf4": 4, "f4e2m1": 4, "u2": 2, "u3": 3, "u6": 6, "u1": 1, "f8e4m3": 8,
            "f8e5m2": 8, "f8e8m0": 8}


@dataclass(frozen=True)
class ScanPolicy:
    """What the scan refuses. The defaults suit a box that runs ONNX Runtime, OpenVINO
    and LiteRT with no custom-op libraries installed."""

    max_tensor_bytes: int = 2 << 30
    onnx_domains: frozenset[str] = DEFAULT_ONNX_DOMAINS
    tflite_custom_ops: frozenset[str] = frozenset()
    missing_parser: Severity = "refuse"


@dataclass(frozen=True)
class Finding:
    severity: Severity
    file: str
    check: str  # pickle, path, symlink, external-data, custom-op, tensor-size, parse
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"severity": self.severity, "file": self.file, "check": self.check,
                "message": self.message}


@dataclass
class ScanReport:
    path: str
    files: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def refused(self) -> bool:
        return any(f.severity == "refuse" for f in self.findings)

    def of(self, severity: Severity) -> list[Finding]:
        return [f for f in self.findings if f.severity == severity]

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "refused": self.refused, "files": self.files,
                "findings": [f.to_dict() for f in self.findings]}

    def add(self, severity: Severity, file: str, check: str, message: str) -> None:
        finding = Finding(severity, file, check, message)
        if finding not in self.findings:  # e.g. many tensors naming one bad location
            self.findings.append(finding)


def raise_if_refused(report: ScanReport, label: str | None = None) -> None:
    """BadRequest listing every refusal, when there is one; ``label`` names what was
    scanned (default: the scanned path)."""
    refusals = report.of("refuse")
    if refusals:
        lines = "; ".join(f"{f.file}: {f.message}" for f in refusals)
        raise BadRequest(f"the security scan refused {label or report.path}: {lines} "
                         f"(`appliance models scan` shows the full report)")


def scan_package(path: Path, *, policy: ScanPolicy | None = None) -> ScanReport:
    """Scan a package directory, a package ``.tar``, or a single model file."""
    policy = policy or ScanPolicy()
    report = ScanReport(str(path))
    if not path.exists():
        report.add("refuse", path.name, "path", "does not exist: give the package "
                   "directory, its .tar, or a model file")
    elif path.is_dir():
        _scan_tree(path, report, policy)
    elif path.suffix.lower() not in MODEL_SUFFIXES and tarfile.is_tarfile(path):
        _scan_archive(path, report, policy)
    else:
        report.files.append(path.name)
        _scan_file(path.parent, path.name, report, policy)
    return report


def _scan_archive(path: Path, report: ScanReport, policy: ScanPolicy) -> None:
    from ..packages.archive import _member_path, safe_extract  # packages imports this module

    try:
        with tarfile.open(path, mode="r:*") as tar:
            members = tar.getmembers()
    except (tarfile.TarError, OSError) as exc:
        report.add("refuse", path.name, "parse", f"is not a readable tar archive: {exc}")
        return
    for member in members:
        try:
            _member_path(member)
        except BadRequest as exc:
            report.add("refuse", member.name, "path", exc.message)
    if report.refused:
        return  # an archive that could escape is not unpacked, not even to look inside
    with tempfile.TemporaryDirectory(prefix="appliance-scan-") as tmp:
        try:
            safe_extract(path, Path(tmp))
        except BadRequest as exc:
            report.add("refuse", path.name, "path", exc.message)
            return
        _scan_tree(Path(tmp), report, policy)


def _scan_tree(root: Path, report: ScanReport, policy: ScanPolicy) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            mode = full.lstat().st_mode
            if stat.S_ISLNK(mode):
                report.add("refuse", rel, "symlink", f"is a symlink (to {os.readlink(full)!r}):"
                           " a package holds regular files only")
            elif stat.S_ISREG(mode):
                report.files.append(rel)
                _scan_file(root, rel, report, policy)
            elif not stat.S_ISDIR(mode):
                report.add("refuse", rel, "path", "is a device, FIFO or socket")


def _scan_file(root: Path, rel: str, report: ScanReport, policy: ScanPolicy) -> None:
    path = root / rel
    with path.open("rb") as f:
        head = f.read(_HEAD)
    if head.startswith(ENCRYPTED_MAGIC):
        report.add("warn", rel, "encrypted", "is encrypted (appliance at-rest format): its "
                   "contents cannot be scanned without the key")
        return
    reason = pickle_reason(path, head)
    if reason:
        report.add("refuse", rel, "pickle", f"{reason}; pickles run code when loaded: "
                   "convert the model to ONNX, TFLite or OpenVINO IR")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        _scan_onnx(root, rel, report, policy)
    elif suffix == ".tflite" or head[4:8] == b"TFL3":
        _scan_tflite(root, rel, report, policy)
    elif suffix == ".xml" and b"<net" in head:
        _scan_ir(root, rel, report, policy)


# --- pickles ---------------------------------------------------------------------------

def _pickle_walk(data: bytes) -> tuple[int, bool, bool, str | None]:
    """Read ``data`` as pickle opcodes: (opcodes read, a named callable imported, that
    import then called, None when STOP was reached else why reading stopped)."""
    count, imported, called = 0, False, False
    strings: list[Any] = []  # what the last opcodes pushed, for STACK_GLOBAL's names
    try:
        for opcode, arg, _ in pickletools.genops(io.BytesIO(data)):
            count += 1
            name = opcode.name
            if name in ("GLOBAL", "INST"):
                imported = imported or bool(isinstance(arg, str) and _IMPORT_ARG.match(arg))
            elif name == "STACK_GLOBAL":
                imported = imported or (len(strings) >= 2 and all(
                    isinstance(a, str) and _DOTTED.match(a) for a in strings[-2:]))
            if imported and name in _CALL_OPS:
                called = True
            if name not in _MEMO_OPS:
                strings.append(arg if name in _STRING_OPS else None)
            if name == "STOP":
                return count, imported, called, None
    except ValueError as exc:  # an unknown opcode, bad argument, or the data ran out
        return count, imported, called, str(exc)
    return count, imported, called, "exhausted"


def _well_formed(data: bytes) -> bool:
    """Whether ``data`` is a complete pickle with a consistent stack, marks and memo
    (what ``pickletools.dis`` checks): chance bytes essentially never are."""
    try:
        pickletools.dis(io.BytesIO(data), out=io.StringIO())
    except Exception:  # noqa: BLE001 - dis raises ValueError, IndexError, KeyError ...
        return False
    return True


def looks_like_pickle(data: bytes, *, complete: bool = True) -> bool:
    """Whether ``data`` is a pickle stream; ``complete=False`` when it is only the first
    bytes of a longer file, so running out of data is not a reason to doubt it.

    A named callable imported and then called is refused whatever follows (an exploit
    need not end well-formed). Otherwise a stream with a protocol 2-5 header must be a
    well-formed pickle or run to the end of the prefix; a headerless (protocol 0/1) one
    must be well-formed and import something. Random bytes, as in weight files, fail
    these within a few opcodes.
    """
    count, imported, called, stopped = _pickle_walk(data)
    if called:
        return True
    if len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5:
        if stopped is None:
            return _well_formed(data)
        ran_out = any(w in stopped for w in ("exhausted", "not enough", "only", "newline"))
        return not complete and ran_out and count >= 2
    return stopped is None and imported and _well_formed(data)


def _decompressed_head(head: bytes) -> bytes | None:
    """The first bytes of a gzip/zlib/bz2/xz/lzma stream (joblib's compressors)."""
    try:
        if head[:2] == b"\x1f\x8b":
            return zlib.decompressobj(wbits=31).decompress(head, _HEAD)
        if head[:1] == b"\x78" and head[1:2] in (b"\x01", b"\x5e", b"\x9c", b"\xda"):
            return zlib.decompressobj().decompress(head, _HEAD)
        if head[:3] == b"BZh":
            return bz2.BZ2Decompressor().decompress(head, _HEAD)
        if head[:6] == b"\xfd7zXZ\x00":
            return lzma.LZMADecompressor(lzma.FORMAT_XZ).decompress(head, _HEAD)
        if head[:3] == b"\x5d\x00\x00":
            return lzma.LZMADecompressor(lzma.FORMAT_ALONE).decompress(head, _HEAD)
    except (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError):
        return None
    return None


def _npy_has_objects(head: bytes) -> bool:
    """Whether a ``.npy`` header declares an object dtype (stored as a pickle)."""
    import ast

    import numpy as np

    major = head[6] if len(head) > 7 else 0
    width = 2 if major == 1 else 4
    start = 8 + width
    size = int.from_bytes(head[8:start], "little")
    try:
        header = ast.literal_eval(head[start:start + size].decode("latin1"))
        return bool(np.lib.format.descr_to_dtype(header["descr"]).hasobject)
    except (ValueError, SyntaxError, KeyError, TypeError):
        return True  # an unreadable header is not worth the risk


def _zip_reason(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist()[:_ZIP_MEMBER_LIMIT]:
                name = info.filename
                if PurePosixPath(name).name == "data.pkl":
                    return (f"a zip holding {name} (the PyTorch checkpoint layout, "
                            "torch.save)")
                if PurePosixPath(name).suffix.lower() in PICKLE_SUFFIXES:
                    return f"a zip holding the pickle {name}"
                with zf.open(info) as member:
                    head = member.read(_HEAD)
                if looks_like_pickle(head, complete=len(head) < _HEAD):
                    return f"a zip holding {name}, which is a pickle"
                if head[:6] == b"\x93NUMPY" and _npy_has_objects(head):
                    return f"a zip holding {name}, a numpy array of Python objects"
    except (zipfile.BadZipFile, OSError, NotImplementedError, RuntimeError):
        return None  # a chance zip signature in weights: the other checks still apply
    return None


def pickle_reason(path: Path, head: bytes) -> str | None:
    """Why the file at ``path`` (first bytes ``head``) is a pickle, or None."""
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        return f"{suffix} files are pickles"
    if looks_like_pickle(head, complete=len(head) < _HEAD):
        return "the file is a pickle stream"
    inner = _decompressed_head(head)
    if inner and looks_like_pickle(inner, complete=False):
        return "the file is a compressed pickle (joblib's format)"
    if head[:6] == b"\x93NUMPY" and _npy_has_objects(head):
        return "the file is a numpy array of Python objects"
    if head[:2] == b"PK" and zipfile.is_zipfile(path):
        return _zip_reason(path)
    return None


# --- paths that must stay inside the package --------------------------------------------

def outside_reason(root: Path, base: Path, location: str) -> str | None:
    """Why ``location`` (relative to ``base``, inside ``root``) is not a file inside the
    package: absolute, ``..``, through a symlink, outside, or missing. None when fine."""
    if not location:
        return "is empty"
    if (PurePosixPath(location).is_absolute() or PureWindowsPath(location).is_absolute()
            or location.startswith(("/", "\\")) or PureWindowsPath(location).drive):
        return "is an absolute path"
    parts = location.replace("\\", "/").split("/")
    if ".." in parts:
        return "has a '..' component"
    here = base
    for part in parts:
        here = here / part
        if here.is_symlink():
            return f"goes through the symlink {here.relative_to(root).as_posix()}"
    try:
        here.resolve().relative_to(root.resolve())
    except ValueError:
        return "resolves outside the package"
    if not here.is_file():
        return "is not a file in the package (list it in the variant's files)"
    return None


# --- ONNX -------------------------------------------------------------------------------

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


def _declared(dims: list[int], bits: int | None) -> int | None:
    if bits is None or any(d < 0 for d in dims):
        return None
    return math.ceil(math.prod(dims) * bits / 8)


def _missing_parser(report: ScanReport, rel: str, policy: ScanPolicy, package: str) -> None:
    report.add(policy.missing_parser, rel, "parse", f"cannot be checked: the {package} "
               f"package is not installed (pip install {package})")


def read_onnx(path: Path) -> Any:
    """The ModelProto in ``path``, external data not loaded (``onnx.load(...,
    load_external_data=False)``), parsed from a memory map: no second copy of the file."""
    import onnx

    model = onnx.ModelProto()
    with path.open("rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return model
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m, memoryview(m) as view:
            model.ParseFromString(view)
    return model


def _scan_onnx(root: Path, rel: str, report: ScanReport, policy: ScanPolicy) -> None:
    try:
        import onnx
    except ImportError:
        _missing_parser(report, rel, policy, "onnx")
        return
    path = root / rel
    try:
        model = read_onnx(path)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types
        report.add("refuse", rel, "parse", f"is not a readable ONNX model: {exc}")
        return
    limit = policy.max_tensor_bytes
    for tensor in onnx_tensors(model):
        size = _declared(list(tensor.dims), onnx_bits(tensor.data_type))
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
            size = _declared(dims, onnx_bits(ttype.elem_type)) if ttype.HasField("shape") \
                else None
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


# --- TFLite -----------------------------------------------------------------------------

def tflite_schema() -> Any:
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def tflite_bits(schema: Any, tensor_type: int) -> int | None:
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


def _scan_tflite(root: Path, rel: str, report: ScanReport, policy: ScanPolicy) -> None:
    try:
        s = tflite_schema()
    except ImportError:
        _missing_parser(report, rel, policy, "ai-edge-litert")
        return
    path = root / rel
    data = path.read_bytes()
    try:
        if not s.Model.ModelBufferHasIdentifier(data, 0):
            raise ValueError("no TFL3 identifier")
        model = s.Model.GetRootAs(data, 0)
        _check_tflite(s, model, len(data), root, path, rel, report, policy)
    except Exception as exc:  # noqa: BLE001 - a damaged flatbuffer fails in many ways
        report.add("refuse", rel, "parse", f"is not a readable TFLite model: {exc!r}")


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
            size = _declared(dims, tflite_bits(s, tensor.Type()))
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


# --- OpenVINO IR ------------------------------------------------------------------------

def parse_ir(path: Path) -> Any:
    """The root element of an OpenVINO IR ``.xml``; ValueError for a document with a
    DOCTYPE or entities (entity expansion is how XML bombs work) or bad XML."""
    return parse_ir_bytes(path.read_bytes())


def parse_ir_bytes(data: bytes) -> Any:
    """:func:`parse_ir` for the bytes of an ``.xml``."""
    import xml.etree.ElementTree as ET
    from xml.parsers import expat

    def refuse(*_: Any) -> None:
        raise ValueError("the XML declares a DOCTYPE or entities, which an IR never has")

    guard = expat.ParserCreate()
    guard.StartDoctypeDeclHandler = refuse
    guard.EntityDeclHandler = refuse
    try:
        guard.Parse(data, True)
        return ET.fromstring(data)
    except (expat.ExpatError, ET.ParseError) as exc:
        raise ValueError(f"not well-formed XML: {exc}") from None


def ir_constants(root_el: Any) -> Iterator[tuple[str, str, list[int], int, int]]:
    """(name, element_type, shape, offset, size) of every Const layer, bodies included."""
    for layer in root_el.iter("layer"):
        data = layer.find("data")
        if layer.get("type") != "Const" or data is None or data.get("offset") is None:
            continue
        shape_text = (data.get("shape") or "").replace(" ", "")
        shape = [int(d) for d in shape_text.split(",") if d] if shape_text else []
        yield (layer.get("name", ""), data.get("element_type", ""), shape,
               int(data.get("offset", "0")), int(data.get("size", "0")))


def _scan_ir(root: Path, rel: str, report: ScanReport, policy: ScanPolicy) -> None:
    path = root / rel
    try:
        root_el = parse_ir(path)
        consts = list(ir_constants(root_el))
    except ValueError as exc:
        report.add("refuse", rel, "parse", f"is not a readable OpenVINO IR: {exc}")
        return
    if root_el.tag != "net":
        return
    weights = path.with_suffix(".bin")
    bin_size = weights.stat().st_size if weights.is_file() else 0
    limit = policy.max_tensor_bytes
    for name, etype, shape, offset, size in consts:
        declared = _declared(shape, _IR_BITS.get(etype))
        biggest = max(size, declared or 0)
        if biggest > limit:
            report.add("refuse", rel, "tensor-size", f"constant {name!r} ({etype} {shape}) "
                       f"declares {biggest} bytes, over the limit of {limit}")
        if offset < 0 or size < 0 or offset + size > bin_size:
            report.add("refuse", rel, "tensor-size", f"constant {name!r} reads bytes "
                       f"{offset}..{offset + size} of {weights.name}, which has {bin_size}")
