"""Helpers for the hub tests: signed packages built with the appliance's own builder, a
box with its two keys that enrols and signs reports, tokens, and reading a device's
desired state back out of the TUF repository."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from helpers.models import scale_manifest, scale_model

from appliance.cli.tokens import mint_token
from appliance.hub.settings import HubSettings
from appliance.hub.tuf_layout import RepoLayout, desired_path
from appliance.packages import build_package
from appliance.packages.archive import sign_package
from appliance.packages.manifest import toml_text


def package_dir(root: Path, version: str = "1", factor: float = 2.0,
                name: str = "scale") -> Path:
    """A package directory of the scale model (two ONNX variants), without hashes."""
    (root / "fp32").mkdir(parents=True)
    (root / "int8").mkdir()
    scale_model(root / "fp32" / "model.onnx", factor)
    scale_model(root / "int8" / "model.int8.onnx", factor)
    (root / "model.toml").write_text(toml_text(scale_manifest(name=name, version=version)))
    return root


def built_package(tmp_path: Path, key: Ed25519PrivateKey | None, *, version: str = "1",
                  factor: float = 2.0, name: str = "scale") -> Path:
    """``appliance package build`` of a scale package, signed by ``key`` (None: unsigned)."""
    src = package_dir(tmp_path / f"src-{name}-{version}-{factor}", version, factor, name)
    if key is not None:
        sign_package(src, key)
    out = tmp_path / f"{name}-{version}-{factor}.tar"
    build_package(src, out)
    return out


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def token(settings: HubSettings, subject: str, *scopes: str, issuer: str | None = None,
          audience: str | None = None) -> str:
    """A local token minted with the hub's own key (``appliance hub token issue``)."""
    minted, _ = mint_token(settings.data_dir, issuer=issuer or settings.auth.local_issuer,
                           audience=audience or settings.auth.local_audience,
                           subject=subject, scopes=list(scopes), roles=[], ttl_s=600)
    return minted


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def _raw(key: Ed25519PrivateKey | X25519PrivateKey) -> str:
    return base64.b64encode(key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()


class Box:
    """A box's keys, its enrolment body and its signed reports."""

    def __init__(self) -> None:
        self.signing = Ed25519PrivateKey.generate()
        self.encryption = X25519PrivateKey.generate()
        self.device_id = ""

    def enrol_body(self, enrolment_token: str) -> dict[str, Any]:
        return {"token": enrolment_token, "signing_key": _raw(self.signing),
                "encryption_key": _raw(self.encryption),
                "hardware": {"profile": "x86_64-avx2", "cpu": {"cores": 4}}}

    def report(self, seq: int, *, key: Ed25519PrivateKey | None = None,
               **fields: Any) -> tuple[bytes, dict[str, str]]:
        """The body and headers of report ``seq``, signed by ``key`` (default its own)."""
        body = {"device_id": self.device_id, "seq": seq, "sent_at": "2026-01-01T00:00:00Z",
                "installed": {}, "health": {"status": "ok"}, "profile": "x86_64-avx2",
                "audit_checkpoints": [], "audit_records": [], "metrics": {}, **fields}
        data = json.dumps(body).encode()
        signature = (key or self.signing).sign(data)
        return data, {"Content-Type": "application/json", "X-Device-Id": self.device_id,
                      "X-Device-Signature": base64.b64encode(signature).decode()}


def desired_of(hub_dir: Path, device_id: str) -> dict[str, Any]:
    """The desired state of ``device_id`` as the TUF repository publishes it."""
    layout = RepoLayout(hub_dir / "repo")
    info = layout.read().find_target(desired_path(device_id))
    assert info is not None, f"no desired state published for {device_id}"
    return dict(json.loads(layout.target_file(info).read_bytes()))


def target_bytes(hub_dir: Path, target_path: str) -> bytes:
    """The bytes the static host serves for ``target_path``."""
    layout = RepoLayout(hub_dir / "repo")
    info = layout.read().find_target(target_path)
    assert info is not None, f"no target {target_path}"
    return layout.target_file(info).read_bytes()


def decrypt_target(data: bytes, wrap: dict[str, Any], private: X25519PrivateKey) -> bytes:
    """What a box does with a package target: its header, the wrap from its desired
    state, its own X25519 key."""
    import io

    from appliance.security.crypto_store import Header, open_chunks, read_header
    from appliance.security.keywrap import unwrap_with_private

    f = io.BytesIO(data)
    header = read_header(f, "package")
    data_key = unwrap_with_private(Header(header.content, wrap, header.body_offset), private,
                                   "package")
    return b"".join(open_chunks(f, header, data_key, "package"))
