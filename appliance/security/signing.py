"""Detached Ed25519 signatures over a package's manifest, and the signing policy.

A package may carry ``model.sig`` beside its manifest. The manifest pins every file's
sha256 and size, so signing the manifest's bytes signs the whole package; ``models
push`` verifies the files against the manifest as it always does, and the signature
against the trusted publisher keys (``keys/trusted``, see :mod:`.trust`).

``model.sig`` (format ``appliance-ed25519-v1``) is JSON::

    {"format": "appliance-ed25519-v1",
     "key_id": "<sha256 of the raw 32-byte Ed25519 public key, hex>",
     "manifest_sha256": "<sha256 of the signed manifest bytes, hex>",
     "signature": "<base64 Ed25519 signature>"}

The signature is over the DSSE pre-authentication encoding
``PAE("application/vnd.appliance.manifest", manifest bytes)`` =
``b"DSSEv1 <len(type)> <type> <len(body)> <body>"``: the standard DSSE encoding, so the
bytes signed cannot be mistaken for another message signed with the same key.
``manifest_sha256`` is not what makes it secure (the signature is); it lets a verifier say
"the manifest changed after signing" instead of only "bad signature".

Why not the OpenSSF model-signing format (sigstore/model-transparency): its key mode
signs a Sigstore bundle (DSSE envelope over an in-toto statement listing each file's
digest), but it accepts only ECDSA P-256/384/521 keys, not Ed25519, and it needs the
sigstore protobuf models to read and write bundles. The appliance's manifest already
lists every file's digest, so a detached signature over it gives the same guarantee
with the cryptography library alone. Because model-signing also writes ``model.sig``
by default, such a bundle is recognised and refused with a clear message rather than
misread.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import BadRequest, ConfigError, Conflict
from ..lifecycle.stages import STAGES
from .trust import key_id, publishers

SIGNATURE_NAME = "model.sig"
FORMAT = "appliance-ed25519-v1"
PAYLOAD_TYPE = "application/vnd.appliance.manifest"
POLICY_VALUES = ("required", "optional")
DEFAULT_POLICY = {"production": "required"}


class SignatureInvalid(BadRequest):
    """A package signature is missing, malformed, from an untrusted key, or wrong.

    ``reason`` is one of ``unsigned``, ``malformed``, ``unknown-key``,
    ``tampered-manifest``, ``bad-signature``.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding of ``payload``."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def sign_manifest(manifest_bytes: bytes, private_key: Ed25519PrivateKey) -> bytes:
    """The ``model.sig`` bytes signing ``manifest_bytes`` with ``private_key``."""
    signature = private_key.sign(pae(PAYLOAD_TYPE, manifest_bytes))
    doc = {"format": FORMAT, "key_id": key_id(private_key.public_key()),
           "manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest(),
           "signature": base64.b64encode(signature).decode()}
    return (json.dumps(doc, indent=2) + "\n").encode()


def parse_signature(sig_bytes: bytes) -> dict[str, str]:
    """The fields of ``model.sig``; SignatureInvalid("malformed") naming what is wrong."""
    try:
        doc = json.loads(sig_bytes)
    except (ValueError, UnicodeDecodeError):
        raise SignatureInvalid("malformed", f"{SIGNATURE_NAME} is not JSON: re-sign the "
                               "package with `appliance package sign`") from None
    if not isinstance(doc, dict):
        raise SignatureInvalid("malformed", f"{SIGNATURE_NAME} must be a JSON object")
    if "mediaType" in doc or "dsseEnvelope" in doc:
        raise SignatureInvalid(
            "malformed", f"{SIGNATURE_NAME} is an OpenSSF model-signing (Sigstore) bundle; "
            f"the appliance verifies {FORMAT} signatures: sign the package with "
            "`appliance package sign PKG_DIR --key KEY.pem` (an Ed25519 key)")
    if doc.get("format") != FORMAT:
        raise SignatureInvalid("malformed", f"{SIGNATURE_NAME} has format "
                               f"{doc.get('format')!r}; expected {FORMAT!r}")
    for name in ("key_id", "manifest_sha256", "signature"):
        if not isinstance(doc.get(name), str):
            raise SignatureInvalid("malformed", f"{SIGNATURE_NAME}: missing field `{name}`")
    return {k: doc[k] for k in ("format", "key_id", "manifest_sha256", "signature")}


def verify_manifest(manifest_bytes: bytes, sig_bytes: bytes | None,
                    trusted_keys: Mapping[str, Ed25519PublicKey]) -> str:
    """The id of the trusted key that signed ``manifest_bytes``; SignatureInvalid with
    the reason otherwise (``sig_bytes`` None: the package is unsigned)."""
    if sig_bytes is None:
        raise SignatureInvalid("unsigned", f"the package is unsigned (no {SIGNATURE_NAME}): "
                               "sign it with `appliance package sign PKG_DIR --key KEY.pem`")
    doc = parse_signature(sig_bytes)
    kid = doc["key_id"]
    key = trusted_keys.get(kid)
    if key is None:
        raise SignatureInvalid(
            "unknown-key", f"{SIGNATURE_NAME} is signed by key {kid}, which this box does "
            "not trust: add the publisher's public key with `appliance keys trust PUB.pem "
            f"--name PUBLISHER` ({len(trusted_keys)} trusted key(s) now)")
    actual = hashlib.sha256(manifest_bytes).hexdigest()
    if doc["manifest_sha256"] != actual:
        raise SignatureInvalid(
            "tampered-manifest", f"the manifest was changed after it was signed: "
            f"{SIGNATURE_NAME} signs a manifest with sha256 {doc['manifest_sha256']}, this "
            f"one has {actual}; re-sign it if the change is yours")
    try:
        key.verify(base64.b64decode(doc["signature"], validate=True),
                   pae(PAYLOAD_TYPE, manifest_bytes))
    except (InvalidSignature, binascii.Error, ValueError):
        raise SignatureInvalid(
            "bad-signature", f"{SIGNATURE_NAME} does not verify with key {kid}: the "
            "signature or the manifest was altered") from None
    return kid


def signature_record(doc: Mapping[str, str], publisher: str) -> dict[str, str]:
    """What the registry keeps of a verified signature (``versions.manifest.signature``)."""
    return {"format": doc["format"], "key_id": doc["key_id"], "publisher": publisher,
            "signature": doc["signature"]}


def validate_policy(policy: Mapping[str, str]) -> dict[str, str]:
    """``policy`` checked for settings: known stages, values required/optional."""
    for stage, need in policy.items():
        if stage not in STAGES or need not in POLICY_VALUES:
            raise ConfigError(f"signing_policy: {stage!r} = {need!r} is not valid; stages are "
                              f"{', '.join(STAGES)} and values {', '.join(POLICY_VALUES)}")
    return dict(policy)


def check_signing(record: Any, to_stage: str, policy: Mapping[str, str], *,
                  trusted_key_ids: Any = None) -> None:
    """Conflict (409) when ``policy`` requires a signed package for ``to_stage`` and
    ``record`` (a VersionRecord) was not pushed with a valid signature.

    ``trusted_key_ids`` (optional): the ids trusted now; a signature by a key no longer
    trusted then counts as none.
    """
    need = policy.get(to_stage, "optional")
    if need not in POLICY_VALUES:
        raise ConfigError(f"signing_policy[{to_stage!r}] is {need!r}; use one of "
                          f"{', '.join(POLICY_VALUES)}")
    if need != "required":
        return
    signature = (record.manifest or {}).get("signature") or {}
    where = f"{record.model} version {record.version}"
    fix = ("sign the package with `appliance package sign PKG_DIR --key KEY.pem`, trust "
           "the publisher with `appliance keys trust PUB.pem --name NAME`, and push it "
           "again (or change signing_policy)")
    if not signature:
        how = ("was added with `models add`, not pushed as a package"
               if not record.package_digest else f"was pushed without {SIGNATURE_NAME}")
        raise Conflict(f"{to_stage} requires a signed package: {where} {how}; {fix}")
    if trusted_key_ids is not None and signature.get("key_id") not in trusted_key_ids:
        raise Conflict(f"{to_stage} requires a signed package: {where} is signed by "
                       f"{signature.get('publisher')!r} (key {signature.get('key_id')}), "
                       f"which is no longer trusted; {fix}")


def verify_package_signature(root: Path, manifest_bytes: bytes,
                             keys_dir: Path) -> dict[str, str] | None:
    """Verify the package directory ``root``'s ``model.sig`` (if any) against the trusted
    publishers under ``keys_dir``; the registry's signature record, or None if unsigned."""
    path = root / SIGNATURE_NAME
    if path.is_symlink():
        raise SignatureInvalid("malformed", f"{SIGNATURE_NAME} is a symlink: a package holds "
                               "regular files only")
    if not path.exists():
        return None
    sig_bytes = path.read_bytes()
    trusted = publishers(keys_dir).by_id()
    kid = verify_manifest(manifest_bytes, sig_bytes, {k: e.key for k, e in trusted.items()})
    return signature_record(parse_signature(sig_bytes), trusted[kid].name)
