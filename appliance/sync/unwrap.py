"""Decrypt a package the hub published for this box (``appliance/hub/publish.py``).

A published package target is the package ``.tar`` encrypted once with a random data
key, in the artifact store's format (:mod:`appliance.security.crypto_store`: ``APLENC1``
header, AES-256-GCM chunks, the plaintext's sha256 and size in the header's authenticated
``content``). The header's own wrap seals the data key to the hub's key, which never
leaves the hub; each box gets the data key wrapped to its X25519 encryption key with the
export's scheme, ``X25519-HKDF-SHA256-A256GCM`` (:mod:`appliance.security.keywrap`), as
``"key"`` in its signed desired state. So one ciphertext on the CDN serves the fleet and
holds nothing usable without a box's private key.

:func:`unwrap_package` puts the box's wrap into the header (the wrap's associated data
is the header's whole ``content``, so a wrap made for another package does not open),
streams the plaintext to a new file (one chunk in memory), and checks the header's
sha256 and the ``expected_sha256`` the desired state names; anything wrong is an
:class:`~appliance.errors.InvalidModelFile` and leaves no file behind.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..errors import InvalidModelFile
from ..security.crypto_store import Header, is_encrypted, open_chunks, read_header
from ..security.keywrap import unwrap_with_private

__all__ = ["unwrap_package"]


def unwrap_package(src: Path, dest: Path, private_key: X25519PrivateKey, *,
                   wrap: dict[str, Any] | None = None,
                   expected_sha256: str | None = None) -> Path:
    """Decrypt the published target ``src`` into the new file ``dest``; ``dest``.

    ``wrap`` is the data key's wrap for this box (the desired state's ``key``); None
    uses the file header's own wrap (a target encrypted for this box alone).
    ``expected_sha256`` is the plaintext package's sha256 as the signed desired state
    gives it.
    """
    name = src.name
    if not is_encrypted(src):
        raise InvalidModelFile(f"{name} is not an encrypted package (no APLENC1 header): "
                               "the hub publishes packages encrypted for each box")
    out = dest.open("xb")  # a file already there is not ours to remove
    try:
        with out, src.open("rb") as f:
            header = read_header(f, name)
            if wrap is not None:
                header = Header(header.content, dict(wrap), header.body_offset)
            data_key = unwrap_with_private(header, private_key, name)
            digest = hashlib.sha256()
            for plain in open_chunks(f, header, data_key, name):
                digest.update(plain)
                out.write(plain)
            out.flush()
            os.fsync(out.fileno())
        got = digest.hexdigest()
        if got != header.sha256:
            raise InvalidModelFile(f"{name}: decrypted to sha256 {got}, its header says "
                                   f"{header.sha256} (damaged or tampered with)")
        if expected_sha256 is not None and got != expected_sha256:
            raise InvalidModelFile(f"{name}: decrypted to sha256 {got}, the desired state "
                                   f"names {expected_sha256}")
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return dest
