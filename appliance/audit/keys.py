"""The key that signs audit checkpoints and tombstones.

By default it is the KeyStore's ``audit`` key, ``<data_dir>/keys/audit.ed25519.pem``.
When a plugin supplies the box key (the ``appliance_box_key`` hook: a TPM, KMS or HSM),
the signing key is derived from it instead, so it is never stored on the disk::

    seed = HKDF-SHA256(box_key, salt=b"appliance-audit", info=b"checkpoint-signing-v1", 32)
    key  = Ed25519 private key from seed

Checkpoints signed earlier by the file key still verify (its public key is kept as a
verify key while the file exists).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .log import SIGNING_KEY_NAME, AuditLog

SALT = b"appliance-audit"
INFO = b"checkpoint-signing-v1"

BoxKeyProvider = Callable[[], bytes | None]


def derive_signing_key(box_key: bytes) -> Ed25519PrivateKey:
    """The audit signing key derived from a 32-byte box key (module docstring)."""
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=SALT, info=INFO).derive(box_key)
    return Ed25519PrivateKey.from_private_bytes(seed)


def audit_keys(data_dir: Path, box_key_provider: BoxKeyProvider | None = None
               ) -> tuple[Ed25519PrivateKey, list[Ed25519PublicKey]]:
    """(signing key, further verify keys) for the log in ``data_dir``."""
    from ..security.keys import KeyStore

    box_key = box_key_provider() if box_key_provider is not None else None
    store = KeyStore(Path(data_dir))
    if box_key is None:
        return store.signing_key(SIGNING_KEY_NAME), []
    older = []
    if (store.dir / f"{SIGNING_KEY_NAME}.ed25519.pem").is_file():
        older.append(store.signing_key(SIGNING_KEY_NAME).public_key())
    return derive_signing_key(box_key), older


def plugin_provider(data_dir: Path, pm: object | None = None) -> BoxKeyProvider:
    """The ``appliance_box_key`` hook of ``pm`` (default: the installed plugins)."""
    from ..plugins import get_plugin_manager
    from ..security.crypto_store import plugin_box_key

    return plugin_box_key(pm if pm is not None else get_plugin_manager(), Path(data_dir))


def open_log(data_dir: Path, box_key_provider: BoxKeyProvider | None = None, *,
             defer_errors: bool = False) -> AuditLog:
    """An :class:`AuditLog` signing with the key :func:`audit_keys` picks."""
    signing, older = audit_keys(data_dir, box_key_provider)
    return AuditLog(Path(data_dir), signing, defer_errors=defer_errors, verify_keys=older)
