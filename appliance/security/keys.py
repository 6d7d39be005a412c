"""The box's keys, under ``<data_dir>/keys`` (directory 0700, files 0600).

- ``box.key``: 32 random bytes, the key-encryption key that wraps each artifact's data
  key (AES-256-GCM). A copied data directory is useless without it.
- ``<name>.ed25519.pem``: Ed25519 signing keys (audit checkpoints, local dev tokens),
  created on first use.

A key file readable by group or others is refused at start (ConfigError naming the file
and the ``chmod`` to run). A plugin may supply the box key instead (from a TPM or KMS)
through the ``appliance_box_key`` hook; then no ``box.key`` is written.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..errors import ConfigError

BOX_KEY_BYTES = 32


def check_private(path: Path) -> None:
    """ConfigError unless ``path`` is readable by its owner only."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(f"key file {path} has permissions {mode:04o}, readable by others: "
                          f"run `chmod 600 {path}` (the appliance refuses looser key files)")


def write_private(path: Path, data: bytes) -> None:
    """Create ``path`` 0600 atomically; never overwrite an existing key."""
    # a unique temporary name: one left by a killed process never blocks the next
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if another process created the key first
    finally:
        os.unlink(tmp)


class KeyStore:
    def __init__(self, data_dir: Path,
                 box_key_provider: Callable[[], bytes | None] | None = None) -> None:
        self.dir = data_dir / "keys"
        self._provider = box_key_provider
        self._box_key: bytes | None = None

    def ensure_dir(self) -> None:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        mode = stat.S_IMODE(self.dir.stat().st_mode)
        if mode & 0o077:
            raise ConfigError(f"key directory {self.dir} has permissions {mode:04o}: run "
                              f"`chmod 700 {self.dir}`")

    def check(self) -> None:
        """Refuse loose permissions on every existing key file (called at start)."""
        if not self.dir.exists():
            return
        self.ensure_dir()
        for path in sorted(self.dir.iterdir()):
            if path.is_file() and not path.name.endswith(".tmp"):
                check_private(path)

    def box_key(self) -> bytes:
        """The key-encryption key: from the provider hook, else ``keys/box.key``."""
        if self._box_key is None:
            key = self._provider() if self._provider else None
            if key is None:
                key = self._file_key("box.key", lambda: secrets.token_bytes(BOX_KEY_BYTES))
            if len(key) != BOX_KEY_BYTES:
                raise ConfigError(f"the box key must be {BOX_KEY_BYTES} bytes, got {len(key)}")
            self._box_key = key
        return self._box_key

    def signing_key(self, name: str) -> Ed25519PrivateKey:
        """The Ed25519 key ``name`` (created on first use)."""
        def create() -> bytes:
            return Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption())
        pem = self._file_key(f"{name}.ed25519.pem", create)
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"{self.dir / (name + '.ed25519.pem')} is not an Ed25519 key")
        return key

    def _file_key(self, filename: str, create: Callable[[], bytes]) -> bytes:
        self.ensure_dir()
        path = self.dir / filename
        if not path.exists():
            # another process may win the race to create it: then use its key
            with contextlib.suppress(FileExistsError):
                write_private(path, create())
        check_private(path)
        return path.read_bytes()
