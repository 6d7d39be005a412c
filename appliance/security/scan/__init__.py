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

The checks live by concern, this package only gathers their public names:

    report.py       ScanPolicy, Finding, ScanReport, raise_if_refused
    package.py      scan_package: the directory/tar walk, symlinks, member paths
    paths.py        outside_reason: a named location stays inside the package
    pickles.py      pickle detection (plain, compressed, in zips, object .npy)
    onnx.py         ONNX custom domains, tensor sizes, external data
    tflite.py       TFLite custom ops, tensor sizes, buffers, external buffers
    openvino_ir.py  OpenVINO IR XML safety and constant sizes
"""

from __future__ import annotations

from .onnx import onnx_bits, onnx_graphs, onnx_nodes, onnx_tensors, read_onnx
from .openvino_ir import ir_constants, parse_ir, parse_ir_bytes
from .package import MODEL_SUFFIXES, scan_package
from .paths import outside_reason
from .pickles import PICKLE_SUFFIXES, looks_like_pickle, pickle_reason
from .report import (
    DEFAULT_ONNX_DOMAINS,
    Finding,
    ScanPolicy,
    ScanReport,
    Severity,
    raise_if_refused,
)
from .tflite import TFLITE_CUSTOM, tflite_bits, tflite_schema

__all__ = [
    "DEFAULT_ONNX_DOMAINS",
    "MODEL_SUFFIXES",
    "PICKLE_SUFFIXES",
    "TFLITE_CUSTOM",
    "Finding",
    "ScanPolicy",
    "ScanReport",
    "Severity",
    "ir_constants",
    "looks_like_pickle",
    "onnx_bits",
    "onnx_graphs",
    "onnx_nodes",
    "onnx_tensors",
    "outside_reason",
    "parse_ir",
    "parse_ir_bytes",
    "pickle_reason",
    "raise_if_refused",
    "read_onnx",
    "scan_package",
    "tflite_bits",
    "tflite_schema",
]
