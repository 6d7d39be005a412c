"""OpenVINO IR (``.xml`` + ``.bin``): XML with a DOCTYPE or entities (how XML bombs
work), constants declared over ``policy.max_tensor_bytes``, and constants that read past
the end of the weights file. Parsed with the standard library only.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .report import ScanPolicy, ScanReport, declared_bytes

# element bits by OpenVINO IR element_type (sub-byte types pack several per byte)
_IR_BITS = {"f64": 64, "f32": 32, "f16": 16, "bf16": 16, "i64": 64, "i32": 32, "i16": 16,
            "i8": 8, "u64": 64, "u32": 32, "u16": 16, "u8": 8, "boolean": 8, "u4": 4, "i4": 4,
            "nf4": 4, "f4e2m1": 4, "u2": 2, "u3": 3, "u6": 6, "u1": 1, "f8e4m3": 8,
            "f8e5m2": 8, "f8e8m0": 8}


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


def scan_ir(root: Path, rel: str, report: ScanReport, policy: ScanPolicy) -> None:
    """Add the findings for the OpenVINO IR at ``root / rel`` to ``report``."""
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
        declared = declared_bytes(shape, _IR_BITS.get(etype))
        biggest = max(size, declared or 0)
        if biggest > limit:
            report.add("refuse", rel, "tensor-size", f"constant {name!r} ({etype} {shape}) "
                       f"declares {biggest} bytes, over the limit of {limit}")
        if offset < 0 or size < 0 or offset + size > bin_size:
            report.add("refuse", rel, "tensor-size", f"constant {name!r} reads bytes "
                       f"{offset}..{offset + size} of {weights.name}, which has {bin_size}")
