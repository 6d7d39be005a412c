"""`appliance models scan|sbom` and `appliance fingerprint check|backfill`: security
review of packages, SBOMs of versions, and tracing model files back to versions."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from . import data_dir_option, handle_errors, json_option, main
from .models import _open_registry, models


@models.command("scan")
@click.argument("pkg", type=click.Path(path_type=Path))
@click.option("--max-tensor-bytes", type=click.IntRange(min=1), default=None,
              help="Refuse declared tensors larger than this (default 2 GiB).")
@click.option("--allow-domain", "domains", multiple=True,
              help="Also allow this ONNX operator domain (repeatable).")
@click.option("--allow-tflite-op", "tflite_ops", multiple=True,
              help="Allow this TFLite custom operator (repeatable).")
@json_option
@handle_errors
def models_scan(pkg: Path, max_tensor_bytes: int | None, domains: tuple[str, ...],
                tflite_ops: tuple[str, ...], as_json: bool) -> None:
    """Security review of PKG (package directory, .tar, or model file) without
    installing it. Exits 1 when anything is refused, as `models push` would."""
    from ..security.scan import DEFAULT_ONNX_DOMAINS, ScanPolicy, scan_package

    defaults = ScanPolicy()
    policy = ScanPolicy(max_tensor_bytes=max_tensor_bytes or defaults.max_tensor_bytes,
                        onnx_domains=DEFAULT_ONNX_DOMAINS | set(domains),
                        tflite_custom_ops=frozenset(tflite_ops))
    report = scan_package(pkg, policy=policy)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for f in report.findings:
            click.echo(f"{f.severity.upper():<6} {f.file} [{f.check}]: {f.message}")
        verdict = "REFUSED" if report.refused else "passed"
        click.echo(f"{pkg}: {verdict} ({len(report.files)} file(s), "
                   f"{len(report.of('refuse'))} refused, {len(report.of('warn'))} warning(s))")
    sys.exit(1 if report.refused else 0)


@models.command("sbom")
@click.argument("name")
@click.argument("version")
@click.option("-o", "--output", "out", type=click.Path(path_type=Path), default=None,
              help="Write the SBOM to this file instead of printing it.")
@data_dir_option
@click.pass_context
@handle_errors
def models_sbom(ctx: click.Context, name: str, version: str, out: Path | None,
                data_dir: Path | None) -> None:
    """Print the CycloneDX 1.5 SBOM of model NAME version VERSION: the one stored at
    push time, else one built from the registry's record of its files."""
    from ..security.fingerprint import version_fingerprints
    from ..security.sbom import stored_sbom, version_sbom

    with _open_registry(ctx, data_dir) as registry:
        record = registry.version(name, version)
        doc = stored_sbom(registry, record) or version_sbom(
            record, fingerprints=version_fingerprints(registry, name, version))
    text = json.dumps(doc, indent=2)
    if out is None:
        click.echo(text)
    else:
        out.write_text(text + "\n")
        click.echo(f"wrote the SBOM of {name} version {version} to {out}")


@main.group()
def fingerprint() -> None:
    """Weights fingerprints: trace a model file back to a registered version."""


@fingerprint.command("check")
@click.argument("file", type=click.Path(path_type=Path))
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def fingerprint_check(ctx: click.Context, file: Path, data_dir: Path | None,
                      as_json: bool) -> None:
    """Say whether the weights of FILE match a registered version (renamed or re-saved
    copies match; fine-tuned, quantized or perturbed ones do not)."""
    from ..security.fingerprint import find_fingerprint, fingerprint_file

    fp = fingerprint_file(file)
    with _open_registry(ctx, data_dir) as registry:
        matches = find_fingerprint(registry, fp)
    if as_json:
        click.echo(json.dumps({"file": str(file), "fingerprint": fp.to_dict(),
                               "matched": bool(matches), "matches": matches}, indent=2))
        return
    click.echo(f"{file}: weights fingerprint {fp.digest} ({fp.format}, {fp.tensors} tensors)")
    if not fp.tensors:
        click.echo("the model has no weights, so it cannot be traced")
    for m in matches:
        state = f"stage {m['stage']}" if m["stage"] else "since deleted"
        click.echo(f"matches {m['model']} version {m['version']} ({m['precision']}, {state})")
    if fp.tensors and not matches:
        click.echo("no registered version has these weights")


@fingerprint.command("backfill")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def fingerprint_backfill(ctx: click.Context, data_dir: Path | None, as_json: bool) -> None:
    """Fingerprint every registered version (those added before fingerprints were)."""
    from ..errors import ApplianceError
    from ..security.fingerprint import record_fingerprint

    logging.basicConfig(level="WARNING")
    done, failed = [], []
    with _open_registry(ctx, data_dir) as registry:
        for record in registry.versions():
            try:
                prints = record_fingerprint(registry, record)
            except ApplianceError as exc:
                failed.append({"model": record.model, "version": record.version,
                               "error": exc.message})
                continue
            done.append({"model": record.model, "version": record.version,
                         "fingerprints": {p: fp.to_dict() for p, fp in prints.items()}})
    if as_json:
        click.echo(json.dumps({"recorded": done, "failed": failed}, indent=2))
    else:
        click.echo(f"fingerprinted {len(done)} version(s); {len(failed)} failed")
        for f in failed:
            click.echo(f"  {f['model']} version {f['version']}: {f['error']}")
    if failed:
        sys.exit(1)
