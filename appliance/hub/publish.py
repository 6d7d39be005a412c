"""Publishing a package: verify its publisher, encrypt it, make it a TUF target.

:func:`publish` takes a ``.tar`` that ``appliance package build`` wrote. It is extracted
with the same checks as ``appliance models push`` (:func:`~appliance.packages.safe_extract`),
then refused unless ``model.sig`` verifies with one of the hub's trusted publisher keys
(``keys/trusted``, ``appliance hub trust-publisher``), and unless every file matches the
manifest's sha256 and size. An unsigned package is refused too: the hub never
distributes what its publishers did not sign.

Encryption, per box (an envelope), rather than per group:

- the package ``.tar`` is encrypted ONCE, byte for byte, with a fresh random AES-256
  data key (:mod:`appliance.security.crypto_store`'s chunked AES-256-GCM format), and
  that ciphertext is the TUF target ``packages/<model>/<version>/<model>-<version>.tar.enc``.
  The target's own header wraps the data key under the hub's key (``keys/box.key``),
  which never leaves the hub, so a CDN or a copied bucket holds nothing usable;
- each box gets the data key wrapped to its own X25519 key (the export's
  ``X25519-HKDF-SHA256-A256GCM``, :mod:`appliance.security.keywrap`) inside its
  desired state (:mod:`.rollout`): a few hundred bytes per box, not a copy of the model.

Why not per group: a group key would have to be handed to every box of the group and
re-keyed (all packages re-encrypted and re-downloaded) whenever a box leaves or is
lost; and a copy per box would multiply the bytes on the static host by the fleet
size. With the envelope a box enrolled later, or moved to another group, needs only a
new small wrap, and a lost box is cut off by no longer wrapping keys to it.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

import msgspec

from ..audit.records import now_iso
from ..errors import BadRequest, Conflict
from ..packages.archive import complete_manifest, safe_extract
from ..packages.manifest import find_manifest, load_manifest
from ..security.crypto_store import encrypt_file, read_header
from ..security.signing import SIGNATURE_NAME, SignatureInvalid, verify_package_signature
from ..security.trust import publishers
from . import store as db
from .audit_chain import append
from .services import Hub

ENCRYPTED_SUFFIX = ".tar.enc"


def target_path_of(model: str, version: str) -> str:
    """The TUF target path of a package's encrypted archive."""
    return f"packages/{model}/{version}/{model}-{version}{ENCRYPTED_SUFFIX}"


def _verified(hub: Hub, package_path: Path, root: Path) -> tuple[Any, bytes, dict[str, str]]:
    """(manifest, manifest bytes, signature record) of the package, extracted into
    ``root``; SignatureInvalid or BadRequest saying what to fix."""
    safe_extract(package_path, root, max_bytes=hub.settings.publish_max_bytes)
    manifest_path = find_manifest(root)
    manifest_bytes = manifest_path.read_bytes()
    if not (root / SIGNATURE_NAME).exists():
        raise SignatureInvalid("unsigned", f"{package_path.name} is unsigned (no "
                               f"{SIGNATURE_NAME}): the hub publishes only packages its "
                               "trusted publishers signed; sign it with `appliance package "
                               "sign PKG_DIR --key KEY.pem` and build it again")
    if not publishers(hub.settings.keys_dir).entries():
        raise SignatureInvalid("unknown-key", "this hub trusts no publisher yet: add the "
                               "publisher's public key with `appliance hub trust-publisher "
                               "PUB.pem --name NAME`")
    signature = verify_package_signature(root, manifest_bytes, hub.settings.keys_dir)
    assert signature is not None  # model.sig exists, so it verified or raised
    _, complete, _, filled = complete_manifest(root)
    if filled or complete != manifest_bytes:
        raise BadRequest(f"{package_path.name}: the manifest lacks sha256/size fields; "
                         "build the package with `appliance package build`")
    return load_manifest(manifest_bytes, filename=manifest_path.name), manifest_bytes, signature


def publish(hub: Hub, package_path: Path, *, actor: str) -> dict[str, Any]:
    """Verify, encrypt and publish the package ``package_path`` as a TUF target; the
    package record (``published`` False when this exact package was there already).
    Conflict for another package under a version the hub holds."""
    if not package_path.is_file():
        raise BadRequest(f"{package_path} is not a file: give the .tar that `appliance "
                         "package build DIR -o PKG.tar` wrote")
    with tempfile.TemporaryDirectory(dir=hub.tmp_dir, prefix="publish-") as tmp:
        manifest, manifest_bytes, signature = _verified(hub, package_path, Path(tmp) / "pkg")
        model, version = manifest.name, manifest.version
        digest = hashlib.sha256(manifest_bytes).hexdigest()
        with hub.store.read() as conn:
            existing = db.get_package(conn, model, version)
        if existing is not None:
            if existing["manifest_sha256"] == digest:
                return {**_public(existing), "published": False}
            raise Conflict(f"the hub already holds {model} version {version} with package "
                           f"digest {existing['manifest_sha256']}; this package has "
                           f"{digest}: a changed package needs a new version")
        encrypted = Path(tmp) / f"{model}-{version}{ENCRYPTED_SUFFIX}"
        encrypt_file(package_path, encrypted, hub.package_key())
        with encrypted.open("rb") as f:
            header = read_header(f, encrypted.name)
        target = target_path_of(model, version)
        info = hub.repository.add_target(target, encrypted, custom={
            "model": model, "version": version, "encryption": header.content["cipher"],
            "package_sha256": header.sha256, "package_size": header.size,
            "manifest_sha256": digest, "publisher_key_id": signature["key_id"]})
    row = {"model": model, "version": version, "target_path": target,
           "target_sha256": info["sha256"], "target_size": info["length"],
           "package_sha256": header.sha256, "package_size": header.size,
           "manifest_sha256": digest, "publisher": signature["publisher"],
           "publisher_key_id": signature["key_id"],
           "header": msgspec.json.encode({"content": header.content,
                                          "wrap": header.wrap}).decode(),
           "published_at": now_iso(), "published_by": actor}
    with hub.store.write() as conn:
        db.add_package(conn, **row)
        append(conn, actor=actor, action="package.publish", at=row["published_at"],
               detail={"model": model, "version": version, "target": target,
                       "target_sha256": info["sha256"], "manifest_sha256": digest,
                       "publisher": signature["publisher"],
                       "publisher_key_id": signature["key_id"]})
    return {**_public(row), "published": True}


def _public(row: dict[str, Any]) -> dict[str, Any]:
    """A package record without its encryption header."""
    return {k: v for k, v in row.items() if k != "header"}


def list_packages(hub: Hub, model: str | None = None) -> list[dict[str, Any]]:
    """Every package the hub holds (of ``model``), oldest first."""
    with hub.store.read() as conn:
        return [_public(p) for p in db.list_packages(conn, model)]
