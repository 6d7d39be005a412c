"""Signed packages of the scale model, built with the appliance's own builder (what CI
hands ``appliance hub publish``)."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.packages import build_package
from appliance.packages.archive import sign_package
from appliance.packages.manifest import toml_text

from .models import scale_manifest, scale_model


def signed_package(tmp_path: Path, key: Ed25519PrivateKey, *, version: str = "1",
                   factor: float = 2.0, name: str = "scale") -> Path:
    """``appliance package build`` of a two-variant scale package (y = factor * x),
    signed by ``key``."""
    src = tmp_path / f"src-{name}-{version}"
    (src / "fp32").mkdir(parents=True)
    (src / "int8").mkdir()
    scale_model(src / "fp32" / "model.onnx", factor)
    scale_model(src / "int8" / "model.int8.onnx", factor)
    (src / "model.toml").write_text(toml_text(scale_manifest(name=name, version=version)))
    sign_package(src, key)
    out = tmp_path / f"{name}-{version}.tar"
    build_package(src, out)
    return out
