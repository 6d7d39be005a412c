"""`appliance package build` and `appliance models push`: reproducible model packages."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import click

from . import data_dir_option, handle_errors, json_option, main, settings_from
from .models import models


@main.group()
def package() -> None:
    """Build reproducible model packages (see docs/packages.md)."""


@package.command("build")
@click.argument("src_dir", type=click.Path(path_type=Path))
@click.option("-o", "--output", "out", required=True, type=click.Path(path_type=Path),
              help="The archive to write (PKG.tar).")
@json_option
@handle_errors
def package_build(src_dir: Path, out: Path, as_json: bool) -> None:
    """Check SRC_DIR against its manifest and write a byte-for-byte reproducible .tar.

    Missing sha256/size fields are computed and written into the archived manifest; a
    wrong one, an unlisted file or a symlink is refused. On a terminal (and without
    --json) a progress bar on stderr shows each step.
    """
    from ..packages import build_package, load_manifest
    from ..packages.progress import progress_for

    with progress_for(as_json) as progress:
        digest = build_package(src_dir, out, progress=progress)
    manifest = load_manifest(src_dir, require_hashes=False)
    if as_json:
        click.echo(json.dumps({"path": str(out), "sha256": digest, "size": out.stat().st_size,
                               "name": manifest.name, "version": manifest.version}, indent=2))
    else:
        click.echo(f"built {out} ({manifest.name} version {manifest.version}, "
                   f"{out.stat().st_size} bytes, sha256 {digest})")


@models.command("push")
@click.argument("pkg", type=click.Path(path_type=Path))
@click.option("--by", "actor", default=None, help="Who pushes it (default: $USER).")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def models_push(ctx: click.Context, pkg: Path, actor: str | None, data_dir: Path | None,
                as_json: bool) -> None:
    """Install the package PKG (.tar or directory) as a new version, all or nothing.

    Pushing the same package again is a no-op; a different package with the same name
    and version is refused. A compressed archive is refused; the files may total at most
    lifecycle.packages.max_extract_bytes and must leave free_reserve_bytes free. On a
    terminal (and without --json) a progress bar on stderr shows each step.
    """
    from ..packages import push_package
    from ..packages.progress import progress_for
    from ..plugins import get_plugin_manager
    from ..registry.opener import open_registry
    from ..runtime.catalog import BackendCatalog

    logging.basicConfig(level="WARNING")
    settings = settings_from(ctx, data_dir=data_dir)
    limits = settings.lifecycle.packages
    with open_registry(settings) as registry, progress_for(as_json) as progress:
        by = actor or os.environ.get("USER") or "cli"
        record = push_package(registry, BackendCatalog(get_plugin_manager()), pkg, actor=by,
                              max_bytes=limits.max_extract_bytes,
                              reserve_bytes=limits.free_reserve_bytes, progress=progress)
    if as_json:
        click.echo(json.dumps(record.to_dict(), indent=2))
    else:
        click.echo(f"pushed {record.model} version {record.version} ({record.format}, "
                   f"{1 + len(record.variants)} variant(s), package digest "
                   f"{record.package_digest})")
