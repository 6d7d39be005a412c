"""Sealing a file's data key to a key-encryption key (the ``wrap`` of an encrypted
artifact's header, see :mod:`.crypto_store`).

- ``A256GCM``: AES-256-GCM under the box key; ``kid`` names the box key (an HMAC of it),
  so a wrong key reads "encrypted with box key X, this box has Y", not "damaged".
- ``X25519-HKDF-SHA256-A256GCM``: for an export recipient. A fresh ephemeral X25519 key
  per file; the shared secret through HKDF-SHA256 (salt: both public keys) gives the
  AES-256-GCM key that seals the data key. ``kid`` is the recipient's key id.

Either way the associated data is the header's whole ``content`` (sha256 included) and
the algorithm name, so neither can be changed without the unwrap failing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..errors import InvalidModelFile

if TYPE_CHECKING:
    from .crypto_store import Header

BOX_WRAP = "A256GCM"
X25519_WRAP = "X25519-HKDF-SHA256-A256GCM"
_HKDF_INFO = b"appliance-export-v1 data key wrap"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: Any) -> bytes:
    return base64.b64decode(str(text), validate=True)


def box_key_id(box_key: bytes) -> str:
    """A short public name for a box key: tells "wrong key" from "damaged file"."""
    return hmac.new(box_key, b"appliance box key id", hashlib.sha256).hexdigest()[:16]


def _raw_public(key: X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def wrap_for_box(header: Header, data_key: bytes, box_key: bytes) -> dict[str, Any]:
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(box_key).encrypt(nonce, data_key, header.wrap_aad(BOX_WRAP))
    return {"alg": BOX_WRAP, "kid": box_key_id(box_key), "nonce": _b64(nonce),
            "key": _b64(sealed)}


def unwrap_with_box(header: Header, box_key: bytes, name: str) -> bytes:
    wrap = header.wrap
    if wrap.get("alg") != BOX_WRAP:
        raise InvalidModelFile(f"{name} is wrapped for {wrap.get('alg')!r}, not for this box's "
                               "key (is it an export for a recipient?)")
    mine = box_key_id(box_key)
    if wrap.get("kid") != mine:
        raise InvalidModelFile(
            f"{name} was encrypted with box key {wrap.get('kid')}, but this data directory's "
            f"box key is {mine}: keys/box.key is missing or not the one the artifacts were "
            "written with (a copied data directory needs its keys/ too); restore it from "
            "the original box or its backup")
    return _open_key(AESGCM(box_key), wrap, header.wrap_aad(BOX_WRAP), name)


def _open_key(aead: AESGCM, wrap: dict[str, Any], aad: bytes, name: str) -> bytes:
    try:
        return aead.decrypt(_unb64(wrap["nonce"]), _unb64(wrap["key"]), aad)
    except (InvalidTag, KeyError, ValueError):
        raise InvalidModelFile(f"{name}: the data key does not unwrap: the header was "
                               "damaged or tampered with") from None


def _recipient_kek(shared: bytes, epk: bytes, recipient: bytes) -> AESGCM:
    kek = HKDF(hashes.SHA256(), 32, salt=epk + recipient, info=_HKDF_INFO).derive(shared)
    return AESGCM(kek)


def wrap_for_recipient(header: Header, data_key: bytes, recipient: X25519PublicKey,
                       recipient_id: str) -> dict[str, Any]:
    """The data key sealed to ``recipient``: ephemeral X25519, HKDF-SHA256, AES-256-GCM."""
    ephemeral = X25519PrivateKey.generate()
    epk, rpk = _raw_public(ephemeral.public_key()), _raw_public(recipient)
    nonce = secrets.token_bytes(12)
    sealed = _recipient_kek(ephemeral.exchange(recipient), epk, rpk).encrypt(
        nonce, data_key, header.wrap_aad(X25519_WRAP))
    return {"alg": X25519_WRAP, "kid": recipient_id, "epk": _b64(epk), "nonce": _b64(nonce),
            "key": _b64(sealed)}


def unwrap_with_private(header: Header, private: X25519PrivateKey, name: str) -> bytes:
    wrap = header.wrap
    if wrap.get("alg") != X25519_WRAP:
        raise InvalidModelFile(f"{name} is not wrapped for a recipient key "
                               f"(alg {wrap.get('alg')!r})")
    try:
        epk = _unb64(wrap["epk"])
        shared = private.exchange(X25519PublicKey.from_public_bytes(epk))
    except (KeyError, ValueError):
        raise InvalidModelFile(f"{name}: damaged recipient key wrap") from None
    aead = _recipient_kek(shared, epk, _raw_public(private.public_key()))
    return _open_key(aead, wrap, header.wrap_aad(X25519_WRAP), name)
