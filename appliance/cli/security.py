"""`appliance keys ...` and `appliance package sign|decrypt`: signed and encrypted packages.

- ``keys generate``: a new Ed25519 (publisher) or X25519 (recipient) key pair;
- ``keys trust`` / ``keys add-recipient`` / ``keys list``: the public keys this box trusts
  for package signatures, and may encrypt exports for (under ``<data_dir>/keys``);
- ``package sign``: write ``model.sig`` for a package directory;
- ``package decrypt``: the recipient's side of ``GET /v1/models/{name}/versions/{v}/export``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from . import data_dir_option, echo_result, handle_errors, json_option, main, settings_from
from .package import package


def _keys_dir(ctx: click.Context, data_dir: Path | None) -> Path:
    return Path(settings_from(ctx, data_dir=data_dir).data_dir) / "keys"


def _echo(as_json: bool, data: Any, text: str) -> None:
    echo_result(data, as_json, text)


@main.group()
def keys() -> None:
    """Publisher keys this box trusts, and recipients it may export models to."""


@keys.command("generate")
@click.option("--type", "kind", type=click.Choice(["ed25519", "x25519"]), required=True,
              help="ed25519: a publisher signing key; x25519: a recipient key for exports.")
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path),
              help="The private key to write (0600); the public key goes to OUT.pub.pem.")
@json_option
@handle_errors
def keys_generate(kind: str, out: Path, as_json: bool) -> None:
    """Create a key pair: OUT (private, mode 0600) and OUT.pub.pem (public)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from ..errors import Conflict
    from ..security.trust import key_id

    private = Ed25519PrivateKey.generate() if kind == "ed25519" else X25519PrivateKey.generate()
    pub_path = out.with_name(out.name.removesuffix(".pem") + ".pub.pem")
    for path in (out, pub_path):
        if path.exists():
            raise Conflict(f"{path} exists; choose another --output")
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub_path.write_bytes(private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    kid = key_id(private.public_key())
    _echo(as_json, {"private": str(out), "public": str(pub_path), "key_id": kid},
          f"wrote {out} (private, 0600) and {pub_path} (public); key id {kid}")


@keys.command("trust")
@click.argument("pubkey", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--name", required=True, help="The publisher's name, recorded on signed versions.")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def keys_trust(ctx: click.Context, pubkey: Path, name: str, data_dir: Path | None,
               as_json: bool) -> None:
    """Trust the Ed25519 public key PUBKEY (PEM) for package signatures, as NAME."""
    from ..errors import BadRequest
    from ..security.trust import publishers

    if not pubkey.is_file():
        raise BadRequest(f"{pubkey} does not exist")
    entry = publishers(_keys_dir(ctx, data_dir)).add(name, pubkey.read_bytes(), str(pubkey))
    _echo(as_json, entry.to_dict(),
          f"trusting publisher {entry.name} (key id {entry.key_id})")


@keys.command("add-recipient")
@click.argument("name")
@click.argument("pubkey", type=click.Path(path_type=Path, dir_okay=False))
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def keys_add_recipient(ctx: click.Context, name: str, pubkey: Path, data_dir: Path | None,
                       as_json: bool) -> None:
    """Register the X25519 public key PUBKEY (PEM) as export recipient NAME."""
    from ..errors import BadRequest
    from ..security.trust import recipients

    if not pubkey.is_file():
        raise BadRequest(f"{pubkey} does not exist")
    entry = recipients(_keys_dir(ctx, data_dir)).add(name, pubkey.read_bytes(), str(pubkey))
    _echo(as_json, entry.to_dict(), f"recipient {entry.name} (key id {entry.key_id})")


@keys.command("list")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def keys_list(ctx: click.Context, data_dir: Path | None, as_json: bool) -> None:
    """The box key's state, trusted publishers and export recipients."""
    from ..security.trust import publishers, recipients

    kdir = _keys_dir(ctx, data_dir)
    box = kdir / "box.key"
    data: dict[str, Any] = {"box_key": {"path": str(box), "present": box.is_file(),
                        "mode": f"{box.stat().st_mode & 0o777:04o}" if box.is_file() else None},
            "trusted_publishers": [e.to_dict() for e in publishers(kdir).entries()],
            "recipients": [e.to_dict() for e in recipients(kdir).entries()]}
    lines = [f"box key: {box} " + (f"(mode {data['box_key']['mode']})" if box.is_file()
                                   else "(absent: created on first store, or from a plugin)")]
    for title, key in (("trusted publishers", "trusted_publishers"),
                       ("recipients", "recipients")):
        lines.append(f"{title}:" + ("" if data[key] else " none"))
        lines += [f"  {e['name']}  {e['type']}  {e['key_id']}" for e in data[key]]
    _echo(as_json, data, "\n".join(lines))


@package.command("sign")
@click.argument("pkg_dir", type=click.Path(path_type=Path, file_okay=False))
@click.option("--key", "key_path", required=True, type=click.Path(path_type=Path),
              help="The publisher's Ed25519 private key (PEM, mode 0600).")
@json_option
@handle_errors
def package_sign(pkg_dir: Path, key_path: Path, as_json: bool) -> None:
    """Sign PKG_DIR's manifest: writes PKG_DIR/model.sig (Ed25519, detached).

    The files are checked against the manifest first; missing sha256/size fields are
    computed and written into the manifest, since the signature pins them.
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from ..packages.archive import sign_package
    from ..security.trust import key_id, load_private_key

    private = load_private_key(key_path, Ed25519PrivateKey)
    sig_path, rewrote = sign_package(pkg_dir, private)
    kid = key_id(private.public_key())
    _echo(as_json, {"signature": str(sig_path), "key_id": kid, "manifest_rewritten": rewrote},
          f"signed {pkg_dir} with key {kid}: wrote {sig_path}"
          + ("; filled in sha256/size in the manifest" if rewrote else ""))


@package.command("decrypt")
@click.argument("export_tar", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--key", "key_path", required=True, type=click.Path(path_type=Path),
              help="The recipient's X25519 private key (PEM, mode 0600).")
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path),
              help="A new (or empty) directory for the decrypted package.")
@json_option
@handle_errors
def package_decrypt(export_tar: Path, key_path: Path, out: Path, as_json: bool) -> None:
    """Decrypt an export made for you (GET .../export?recipient=NAME) into OUT.

    Every file's sha256 is checked; a version pushed as a package comes out as that
    package (manifest and model.sig included), ready for `appliance models push`.
    """
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from ..errors import BadRequest
    from ..security.export import decrypt_export
    from ..security.trust import load_private_key

    if not export_tar.is_file():
        raise BadRequest(f"{export_tar} does not exist")
    summary = decrypt_export(export_tar, load_private_key(key_path, X25519PrivateKey), out)
    _echo(as_json, summary, f"decrypted {summary['model']} version {summary['version']} "
          f"({len(summary['files'])} file(s)) into {out}")
