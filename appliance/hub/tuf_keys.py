"""The hub's TUF signing keys: Ed25519, one unencrypted PKCS#8 PEM file per key.

Files are ``<keys dir>/<kind>-<keyid>.pem`` with permissions 0600, where ``kind`` is

* ``root`` — signs root metadata (key rotations). Offline in production.
* ``targets`` — signs top-level targets: the model packages. Offline in production.
* ``online`` — signs timestamp, snapshot and the ``devices-*`` hash bins (desired states),
  so the hub can publish desired states and re-sign expiring metadata unattended.

Taking keys offline: move ``root-*.pem`` and ``targets-*.pem`` off the hub (a hardware
token's backup, an encrypted USB stick). Day-to-day work (``set_desired``, ``refresh``)
needs only the online key. To publish a package or rotate keys, supply them again: copy
the files back into the keys folder for the operation, or open the repository with
``offline_keys=<folder>`` (e.g. the mounted stick); that folder is searched first.
A key a rotation revokes is deleted from the keys folder (never from ``offline_keys``):
a revoked root key must not survive, since a box still trusting the old root would
accept a new root it signs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner, Key, SSlibKey

from appliance.errors import ServiceUnavailable
from appliance.hub.tuf_files import atomic_write

ROOT = "root"
TARGETS = "targets"
ONLINE = "online"
KINDS = (ROOT, TARGETS, ONLINE)


class SigningKeyUnavailable(ServiceUnavailable):
    """A signing key an operation needs is not on this hub (it is offline, or lost)."""


class KeyStore:
    """Private keys in ``directory`` (created 0700), and optionally an ``offline_dir``
    searched first for ``root`` and ``targets`` keys."""

    def __init__(self, directory: Path, offline_dir: Path | None = None) -> None:
        self.directory = Path(directory)
        self.offline_dir = Path(offline_dir) if offline_dir is not None else None

    def generate(self, kind: str) -> CryptoSigner:
        """A new Ed25519 key of ``kind``, written to ``<kind>-<keyid>.pem`` (0600)."""
        _check_kind(kind)
        signer = CryptoSigner.generate_ed25519()
        self.directory.mkdir(parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        atomic_write(self.path(kind, signer.public_key.keyid), signer.private_bytes, mode=0o600)
        return signer

    def path(self, kind: str, keyid: str) -> Path:
        """Where the keys folder keeps (or would keep) the private key ``keyid``."""
        return self.directory / f"{kind}-{keyid}.pem"

    def signer(self, kind: str, key: Key) -> CryptoSigner:
        """The signer for the public ``key``; SigningKeyUnavailable when no folder has it."""
        _check_kind(kind)
        name = f"{kind}-{key.keyid}.pem"
        folders = [self.directory]
        if self.offline_dir is not None and kind != ONLINE:
            folders.insert(0, self.offline_dir)
        for folder in folders:
            path = folder / name
            if path.is_file():
                return _load(path, key)
        where = " or ".join(str(f) for f in folders)
        offline = kind != ONLINE
        fix = (
            f"{kind} keys are kept offline: copy {name} from the offline medium into "
            f"{self.directory} (or open the repository with offline_keys=<folder holding "
            "it>) and retry"
            if offline
            else f"the online key is missing from {self.directory}; restore it from the "
            "hub's backup, or rotate the online key with the root and targets keys"
        )
        raise SigningKeyUnavailable(
            f"the {kind} signing key {key.keyid[:12]}… is not in {where}: {fix}"
        )

    def signers(
        self, kind: str, keys: Iterable[Key], threshold: int, *, role: str
    ) -> list[CryptoSigner]:
        """Every available signer among ``keys``; SigningKeyUnavailable unless at least
        ``threshold`` of them are here (``role`` names the metadata in the message)."""
        found: list[CryptoSigner] = []
        missing: list[SigningKeyUnavailable] = []
        for key in keys:
            try:
                found.append(self.signer(kind, key))
            except SigningKeyUnavailable as exc:
                missing.append(exc)
        if len(found) < threshold:
            detail = "; ".join(e.message for e in missing)
            raise SigningKeyUnavailable(
                f"signing {role} metadata needs {threshold} {kind} key(s) and only "
                f"{len(found)} are available: {detail}"
            )
        return found

    def discard(self, kind: str, keyid: str) -> None:
        """Delete a revoked key's file from the keys folder (no error if absent)."""
        self.path(kind, keyid).unlink(missing_ok=True)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown key kind {kind!r}: expected one of {', '.join(KINDS)}")


def _load(path: Path, key: Key) -> CryptoSigner:
    if not isinstance(key, SSlibKey):
        raise SigningKeyUnavailable(
            f"key {key.keyid[:12]}… in the metadata is a {type(key).__name__}, not a "
            "file key: sign with the tool that holds it"
        )
    private = load_pem_private_key(path.read_bytes(), None)
    return CryptoSigner(private, key)
