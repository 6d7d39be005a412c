"""`appliance models ...`: register and inspect models.

Every command opens the registry with :func:`~appliance.registry.opener.open_registry`
(the plugins' box key applied); :func:`_open_registry` opens it for a command line."""

from __future__ import annotations

import json
import logging
import os
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from . import data_dir_option, handle_errors, json_option, main, settings_from

if TYPE_CHECKING:
    from ..registry import Registry


@main.group()
def models() -> None:
    """Register and inspect models."""


def _open_registry(ctx: click.Context,
                   data_dir: Path | None) -> AbstractContextManager[Registry]:
    """:func:`~appliance.registry.opener.open_registry` for the settings of this command
    line: ``with _open_registry(ctx, data_dir) as registry:``."""
    from ..registry.opener import open_registry  # imported when a command needs it

    return open_registry(settings_from(ctx, data_dir=data_dir))


def _variant(value: str) -> tuple[str, Path]:
    precision, sep, path = value.partition("=")
    if not sep or not precision or not path:
        raise click.BadParameter(f"{value!r}: write PRECISION=PATH, e.g. int8=model.int8.onnx")
    return precision, Path(path)


@models.command("add")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="Model name.")
@click.option("--version", default=None, help="Version (default: next number).")
@click.option("--precision", default="fp32", show_default=True,
              help="Precision of PATH (fp32, fp16, bf16, int8, int4).")
@click.option("--variant", "variants", multiple=True,
              help="Another variant of this version, PRECISION=PATH (repeatable); the "
                   "hardware profile picks which one serves.")
@click.option("--backend", default=None,
              help="Pin a backend (e.g. onnxruntime-cuda); the profile's gpu_fallback "
                   "decides what happens on a box without it.")
@click.option("--by", "created_by", default=None, help="Who adds it (default: $USER).")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def models_add(ctx: click.Context, path: Path, name: str, version: str | None,
               precision: str, variants: tuple[str, ...], backend: str | None,
               created_by: str | None, data_dir: Path | None, as_json: bool) -> None:
    """Check that PATH loads, store it and record it as a new version."""
    from ..packages.importer import import_model
    from ..plugins import get_plugin_manager
    from ..runtime.catalog import BackendCatalog

    logging.basicConfig(level="WARNING")
    parsed = [_variant(v) for v in variants]
    with _open_registry(ctx, data_dir) as registry:
        by = created_by or os.environ.get("USER") or "cli"
        record = import_model(registry, BackendCatalog(get_plugin_manager()), path, name=name,
                              version=version, created_by=by, precision=precision,
                              variants=parsed, backend=backend)
    if as_json:
        click.echo(json.dumps(record.to_dict(), indent=2))
    else:
        click.echo(f"added {record.model} version {record.version} ({record.format}, "
                   f"{len(record.files)} file(s), digest {record.digest[:12]})")


@models.command("list")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def models_list(ctx: click.Context, data_dir: Path | None, as_json: bool) -> None:
    """List registered models and their versions."""
    with _open_registry(ctx, data_dir) as registry:
        records = registry.models()
    if as_json:
        click.echo(json.dumps([
            {"name": m.name, "versions": [v.version for v in m.versions],
             "created_at": m.created_at} for m in records], indent=2))
        return
    if not records:
        click.echo("no models registered (add one with: appliance models add PATH --name N)")
    for m in records:
        latest = m.versions[-1] if m.versions else None
        fmt = f"  {latest.format}" if latest else ""
        click.echo(f"{m.name:<24} versions: {', '.join(v.version for v in m.versions)}{fmt}")


@models.command("show")
@click.argument("name")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def models_show(ctx: click.Context, name: str, data_dir: Path | None, as_json: bool) -> None:
    """Show one model: versions, signatures, files and provenance."""
    with _open_registry(ctx, data_dir) as registry:
        record = registry.model(name)
    if as_json:
        click.echo(json.dumps(record.to_dict(), indent=2))
        return
    click.echo(f"{record.name} (created {record.created_at} by {record.created_by})")
    for v in record.versions:
        click.echo(f"  version {v.version}: {v.format} {v.precision}, stage {v.stage}, added "
                   f"{v.created_at} by {v.created_by}"
                   + (f", pinned to {v.backend}" if v.backend else ""))
        for var in v.variants:
            click.echo(f"    variant {var.precision}: {var.format} {var.primary_file}")
        for s in v.inputs:
            click.echo(f"    input  {s.name}: {s.datatype} {list(s.shape)}")
        for s in v.outputs:
            click.echo(f"    output {s.name}: {s.datatype} {list(s.shape)}")
        for f in v.files:
            click.echo(f"    file   {f['name']} {f['size']} bytes sha256 {f['sha256']}")
