"""The box's device identity towards its hub: an Ed25519 key that signs every report, and
an X25519 key that packages are encrypted to.

By default both are files under ``<data_dir>/sync/`` (directory 0700, files 0600, PEM,
created once, atomically, never overwritten): ``device.ed25519.pem`` and
``device.x25519.pem``. When a plugin supplies the box key (the ``appliance_box_key``
hook: a TPM, KMS or HSM), both are derived from it instead and never stored, as the
audit checkpoint key is (:mod:`appliance.audit.keys`)::

    seed = HKDF-SHA256(box_key, salt=b"appliance-sync", info=b"device-signing-v1", 32)
    seed = HKDF-SHA256(box_key, salt=b"appliance-sync", info=b"device-encryption-v1", 32)

The hub knows the box by the public halves, sent at enrolment (base64 of the raw 32
bytes); :func:`verify` is the hub's check of a signature, used by tests too.
"""

from __future__ import annotations

import base64
import contextlib
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import ConfigError
from ..security.keys import check_private, write_private
from ..security.trust import key_id

__all__ = ["SYNC_DIR", "DeviceIdentity", "load_identity", "raw_public_b64", "sync_dir",
           "verify"]

SYNC_DIR = "sync"
SIGNING_FILE = "device.ed25519.pem"
ENCRYPTION_FILE = "device.x25519.pem"
SALT = b"appliance-sync"
SIGNING_INFO = b"device-signing-v1"
ENCRYPTION_INFO = b"device-encryption-v1"

BoxKeyProvider = Callable[[], bytes | None]


def sync_dir(data_dir: Path) -> Path:
    """``<data_dir>/sync``, created 0700; ConfigError when it is open to others."""
    path = Path(data_dir) / SYNC_DIR
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(f"sync directory {path} has permissions {mode:04o}: run "
                          f"`chmod 700 {path}` (it holds the device's private keys)")
    return path


def raw_public_b64(key: Ed25519PrivateKey | X25519PrivateKey) -> str:
    """Base64 of the raw 32-byte public half of ``key`` (how the hub is told it)."""
    raw = key.public_key().public_bytes(serialization.Encoding.Raw,
                                        serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


@dataclass(frozen=True)
class DeviceIdentity:
    """The device's two private keys; ``derived`` when they come from the box key."""

    signing_key: Ed25519PrivateKey
    encryption_key: X25519PrivateKey
    derived: bool = False

    @property
    def signing_public(self) -> str:
        return raw_public_b64(self.signing_key)

    @property
    def encryption_public(self) -> str:
        return raw_public_b64(self.encryption_key)

    @property
    def key_id(self) -> str:
        """sha256 (hex) of the raw signing public key, as ``appliance keys`` names keys."""
        return key_id(self.signing_key.public_key())

    def sign(self, body: bytes) -> str:
        """Base64 of the Ed25519 signature over exactly ``body``."""
        return base64.b64encode(self.signing_key.sign(bytes(body))).decode()


def verify(public_b64: str, body: bytes, signature_b64: str) -> bool:
    """Whether ``signature_b64`` is a valid Ed25519 signature of ``body`` by the raw
    public key ``public_b64`` (False on any malformed input, never raises)."""
    try:
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_b64, validate=True))
        public.verify(base64.b64decode(signature_b64, validate=True), bytes(body))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _derive(box_key: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=SALT, info=info).derive(box_key)


def _file_key(path: Path, make: Callable[[], Ed25519PrivateKey | X25519PrivateKey],
              kind: type, create: bool) -> Ed25519PrivateKey | X25519PrivateKey:
    if not path.exists():
        if not create:
            raise ConfigError(f"this box has no device key {path}: enrol it first with "
                              "`appliance sync enroll HUB_URL TOKEN`")
        pem = make().private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption())
        with contextlib.suppress(FileExistsError):  # another process made it first
            write_private(path, pem)
    check_private(path)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey | X25519PrivateKey) or not isinstance(key, kind):
        raise ConfigError(f"{path} is not an {kind.__name__.removesuffix('PrivateKey')} "
                          "private key; restore the device key or re-enrol the box")
    return key


def load_identity(data_dir: Path, box_key_provider: BoxKeyProvider | None = None, *,
                  create: bool = True) -> DeviceIdentity:
    """The device identity of ``data_dir``: derived from the plugin's box key when
    ``box_key_provider`` returns one, else the key files (made when missing and
    ``create``; without ``create`` a missing file is a ConfigError saying to enrol)."""
    box_key = box_key_provider() if box_key_provider is not None else None
    if box_key is not None:
        if len(box_key) != 32:
            raise ConfigError(f"the box key must be 32 bytes, got {len(box_key)}")
        return DeviceIdentity(
            Ed25519PrivateKey.from_private_bytes(_derive(box_key, SIGNING_INFO)),
            X25519PrivateKey.from_private_bytes(_derive(box_key, ENCRYPTION_INFO)),
            derived=True)
    directory = sync_dir(data_dir)
    signing = _file_key(directory / SIGNING_FILE, Ed25519PrivateKey.generate,
                        Ed25519PrivateKey, create)
    encryption = _file_key(directory / ENCRYPTION_FILE, X25519PrivateKey.generate,
                           X25519PrivateKey, create)
    assert isinstance(signing, Ed25519PrivateKey)
    assert isinstance(encryption, X25519PrivateKey)
    return DeviceIdentity(signing, encryption)
