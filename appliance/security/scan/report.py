"""What the scan refuses and what it found: the policy, findings and the report.

Also the two findings every model format shares: a tensor whose declared size is over
``policy.max_tensor_bytes``, and a format whose parser is not installed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from ...errors import BadRequest

Severity = Literal["refuse", "warn"]
DEFAULT_ONNX_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})


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


def declared_bytes(dims: list[int], bits: int | None) -> int | None:
    """Bytes a tensor of shape ``dims`` and ``bits`` per element declares; None when the
    shape is dynamic or the element size unknown."""
    if bits is None or any(d < 0 for d in dims):
        return None
    return math.ceil(math.prod(dims) * bits / 8)


def missing_parser(report: ScanReport, rel: str, policy: ScanPolicy, package: str) -> None:
    """Record that ``rel`` cannot be checked because ``package`` is not installed."""
    report.add(policy.missing_parser, rel, "parse", f"cannot be checked: the {package} "
               f"package is not installed (pip install {package})")
