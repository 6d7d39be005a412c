"""The ``appliance`` command.

Exit codes: 0 success, 1 the appliance refused or failed (the message says why and what
to do), 2 bad usage. ``--json`` prints machine-readable output, errors included.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .errors import ApplianceError, ConfigError
from .settings import Settings, load_settings

log = logging.getLogger("appliance")


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _settings(ctx: click.Context, **cli: Any) -> Settings:
    config = ctx.obj.get("config") if ctx.obj else None
    return load_settings(cli, config=config)


def _fail(message: str, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"error": message}))
    else:
        click.echo(f"error: {message}", err=True)
    sys.exit(1)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn ApplianceError into a clear message and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ApplianceError as exc:
            _fail(exc.message, bool(kwargs.get("as_json")))

    return wrapper


data_dir_option = click.option(
    "--data-dir", type=click.Path(path_type=Path), default=None,
    help="Data directory (registry, artifacts, keys). Env: APPLIANCE_DATA_DIR. Default ./var")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.group()
@click.option("--config", type=click.Path(path_type=Path, dir_okay=False), default=None,
              envvar="APPLIANCE_CONFIG", help="TOML settings file. Env: APPLIANCE_CONFIG.")
@click.version_option(package_name="appliance")
@click.pass_context
def main(ctx: click.Context, config: Path | None) -> None:
    """A model-serving appliance speaking the Open Inference Protocol v2."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind before starting the server, so a busy port is one clear message."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        hint = ("another process is listening there (another appliance?): stop it or pass "
                "--port" if exc.errno == 98 else "check --host")
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}; {hint}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


@main.command()
@click.option("--host", default=None, help="Address to bind. Default 127.0.0.1.")
@click.option("--port", type=int, default=None, help="Port. Default 8000.")
@data_dir_option
@click.option("--demo/--no-demo", "demo_models", default=None,
              help="Register the demo models when the registry is empty (default on).")
@click.option("--profile", default=None, help="Hardware profile name to use.")
@click.pass_context
@handle_errors
def serve(ctx: click.Context, **cli: Any) -> None:
    """Serve the registered models over REST (Open Inference Protocol v2)."""
    import uvicorn

    from .api import create_app
    from .services import build_services, seed_demo_models

    settings = _settings(ctx, **cli)
    _setup_logging(settings.log_level)
    sock = bind_socket(settings.host, settings.port)
    services = build_services(settings)
    log.info("hardware profile %s (%s)", services.hardware.match.profile.name,
             "; ".join(services.hardware.match.reasons[:1]))
    if settings.demo_models:
        added = seed_demo_models(services)
        if added:
            log.info("registered demo models: %s", ", ".join(added))
    app = create_app(services)
    log.info("serving on http://%s:%d (data dir %s)", settings.host, sock.getsockname()[1],
             settings.data_dir.resolve())
    config = uvicorn.Config(app, loop="uvloop", http="httptools", access_log=False,
                            log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])


@main.command()
@json_option
@click.option("--profile", default=None, help="Use this profile instead of the best match.")
@click.pass_context
@handle_errors
def hardware(ctx: click.Context, as_json: bool, profile: str | None) -> None:
    """Show the hardware facts, the matched profile and why."""
    from .hardware import format_report
    from .plugins import get_plugin_manager
    from .services import discover_hardware

    logging.basicConfig(level="ERROR")
    settings = _settings(ctx, profile=profile)
    report = discover_hardware(settings, get_plugin_manager()).report()
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))


@main.group()
def models() -> None:
    """Register and inspect models."""


def _open_registry(ctx: click.Context, data_dir: Path | None) -> Any:
    from .registry import Registry

    settings = _settings(ctx, data_dir=data_dir)
    return Registry(settings.data_dir)


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
    from .plugins import get_plugin_manager
    from .runtime.catalog import BackendCatalog
    from .runtime.importer import import_model

    logging.basicConfig(level="WARNING")
    parsed = [_variant(v) for v in variants]
    registry = _open_registry(ctx, data_dir)
    try:
        by = created_by or os.environ.get("USER") or "cli"
        record = import_model(registry, BackendCatalog(get_plugin_manager()), path, name=name,
                              version=version, created_by=by, precision=precision,
                              variants=parsed, backend=backend)
    finally:
        registry.close()
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
    registry = _open_registry(ctx, data_dir)
    try:
        records = registry.models()
    finally:
        registry.close()
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
    registry = _open_registry(ctx, data_dir)
    try:
        record = registry.model(name)
    finally:
        registry.close()
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


if __name__ == "__main__":
    main()
