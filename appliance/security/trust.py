"""Named public keys the box trusts or exports to, under ``<data_dir>/keys``.

- ``keys/trusted/<name>.pem``: Ed25519 public keys of package publishers; a package
  signed by one of them counts as signed (``appliance keys trust``).
- ``keys/recipients/<name>.pem``: X25519 public keys that exports may be encrypted for
  (``appliance keys add-recipient``).

A key is known by its id, the sha256 of its raw 32 public bytes (hex). Directories are
0700 and files 0600 like the rest of ``keys/``: a public key is no secret, but whoever
can add one decides whose packages are trusted and who may receive models.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from ..errors import BadRequest, Conflict, NotFound
from ..registry.models import check_name
from .keys import check_private

K = TypeVar("K", Ed25519PublicKey, X25519PublicKey)
_KINDS = {Ed25519PublicKey: "Ed25519", X25519PublicKey: "X25519",
          Ed25519PrivateKey: "Ed25519", X25519PrivateKey: "X25519"}


def _kind(key_or_class: Any) -> str:
    for cls, name in _KINDS.items():
        if key_or_class is cls or isinstance(key_or_class, cls):
            return name
    return type(key_or_class).__name__


def key_id(public_key: Ed25519PublicKey | X25519PublicKey) -> str:
    """sha256 of the raw public key, hex: how signatures and exports name a key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def _how_to_make(kind: type) -> str:
    algorithm = _kind(kind).lower()
    return (f"make one with `appliance keys generate --type {algorithm} -o KEY.pem` or "
            f"`openssl genpkey -algorithm {algorithm}`")


def load_public_key(pem: bytes, kind: type[K], where: str) -> K:
    """A PEM public key of ``kind``; a private key of that kind is accepted too (its
    public half is used), so a publisher may pass either."""
    try:
        key: Any = serialization.load_pem_public_key(pem)
    except ValueError:
        try:
            key = serialization.load_pem_private_key(pem, password=None).public_key()
        except (ValueError, TypeError):
            raise BadRequest(f"{where} is not a PEM public key ({_how_to_make(kind)})") from None
    if not isinstance(key, kind):
        raise BadRequest(f"{where} is a {_kind(key)} key, not {_kind(kind)} "
                         f"({_how_to_make(kind)})")
    return key


def load_private_key(path: Path, kind: type) -> Any:
    """The unencrypted PEM private key of ``kind`` at ``path`` (readable by its owner
    only, like every key file the appliance uses)."""
    if not path.is_file():
        raise BadRequest(f"{path} does not exist ({_how_to_make(kind)})")
    check_private(path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"{path} is not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, kind):
        raise BadRequest(f"{path} is not an {_kind(kind)} private key ({_how_to_make(kind)})")
    return key


@dataclass(frozen=True)
class NamedKey(Generic[K]):
    name: str
    key_id: str
    key: K

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "key_id": self.key_id, "type": _kind(self.key)}


class PublicKeyDir(Generic[K]):
    """Public keys of one ``kind`` by name, one PEM file each."""

    def __init__(self, directory: Path, kind: type[K], role: str) -> None:
        self.dir = directory
        self.kind: type[K] = kind
        self.role = role

    def add(self, name: str, pem: bytes, where: str) -> NamedKey[K]:
        """Store ``pem`` as ``name``; the same key again is a no-op, another key under a
        taken name (or this key under another name) a Conflict."""
        check_name(f"{self.role} name", name)
        key = load_public_key(pem, self.kind, where)
        kid = key_id(key)
        for known in self.entries():
            if known.name == name and known.key_id == kid:
                return known
            if known.name == name:
                raise Conflict(f"{self.role} {name!r} already has key {known.key_id[:16]}…; "
                               f"remove {self.dir / (name + '.pem')} first to replace it")
            if known.key_id == kid:
                raise Conflict(f"this key is already the {self.role} {known.name!r}")
        self.dir.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.dir.mkdir(mode=0o700, exist_ok=True)
        data = key.public_bytes(serialization.Encoding.PEM,
                                serialization.PublicFormat.SubjectPublicKeyInfo)
        fd = os.open(self.dir / f"{name}.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        return NamedKey(name, kid, key)

    def entries(self) -> list[NamedKey[K]]:
        if not self.dir.is_dir():
            return []
        found = []
        for path in sorted(self.dir.glob("*.pem")):
            key = load_public_key(path.read_bytes(), self.kind, str(path))
            found.append(NamedKey(path.stem, key_id(key), key))
        return found

    def get(self, name: str) -> NamedKey[K]:
        for entry in self.entries():
            if entry.name == name:
                return entry
        known = ", ".join(e.name for e in self.entries()) or "none"
        raise NotFound(f"no {self.role} named {name!r} (known: {known})")

    def by_id(self) -> dict[str, NamedKey[K]]:
        return {e.key_id: e for e in self.entries()}


def publishers(keys_dir: Path) -> PublicKeyDir[Ed25519PublicKey]:
    """Trusted package publishers: ``keys/trusted``."""
    # cryptography's key classes are abstract: mypy allows them as type[K] only with this
    return PublicKeyDir(keys_dir / "trusted", Ed25519PublicKey,  # type: ignore[type-abstract]
                        "trusted publisher")


def recipients(keys_dir: Path) -> PublicKeyDir[X25519PublicKey]:
    """Export recipients: ``keys/recipients``."""
    return PublicKeyDir(keys_dir / "recipients", X25519PublicKey,  # type: ignore[type-abstract]
                        "recipient")

