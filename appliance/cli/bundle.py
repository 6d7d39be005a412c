"""`appliance bundle build`: an air-gapped install bundle (see docs/install.md)."""

from __future__ import annotations

from pathlib import Path

import click
import msgspec

from . import echo_result, handle_errors, json_option, main


@main.group()
def bundle() -> None:
    """Bundles that install the appliance on a box with no network."""


@bundle.command("build")
@click.argument("output", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--platform", "target", default=None, metavar="TAG",
              help="Target platform: manylinux_2_28_x86_64 or manylinux_2_28_aarch64 "
                   "(other manylinux/musllinux tags are tried). Default: this machine's "
                   "architecture, manylinux_2_28.")
@click.option("--python", "python", default="3.11", show_default=True,
              help="The target box's Python (major.minor); its wheels are cp<version>.")
@click.option("--extras", default="cpu,openvino,litert", show_default=True,
              help="Comma-separated appliance extras to include (backends).")
@json_option
@handle_errors
def build(output: Path, target: str | None, python: str, extras: str,
          as_json: bool) -> None:
    """Write OUTPUT (a tar file): wheelhouse, profiles, systemd unit, install.sh."""
    from ..bundle import BundleSpec, build_bundle, host_target

    spec = BundleSpec(platform=target or host_target(), python=python,
                      extras=tuple(e.strip() for e in extras.split(",") if e.strip()))
    info = build_bundle(spec, output)
    echo_result(msgspec.to_builtins(info), as_json,
                f"wrote {info.path} ({info.size_bytes / 2**20:.1f} MiB, "
                f"{len(info.wheels)} wheels): {info.top}, CPython {info.python}, extras "
                f"{','.join(info.extras) or '(none)'}; needs {info.libc_floor} or newer.\n"
                f"On the box, as root: tar xf {output.name} && ./{info.top}/install.sh")
