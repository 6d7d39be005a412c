"""The ``appliance`` command.

Exit codes: 0 success, 1 the appliance refused or failed (the message says why and what
to do), 2 bad usage. ``--json`` prints machine-readable output, errors included.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..errors import ApplianceError
from ..settings import Settings, load_settings

log = logging.getLogger("appliance")


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def settings_from(ctx: click.Context, **cli: Any) -> Settings:
    config = ctx.obj.get("config") if ctx.obj else None
    return load_settings(cli, config=config)


def echo_result(result: Any, as_json: bool, text: str) -> None:
    """Print ``result`` as JSON with ``--json``, else the human ``text``."""
    click.echo(json.dumps(result, indent=2) if as_json else text)


def _fail(message: str, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"error": message}))
    else:
        click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _where(exc: BaseException, kwargs: dict[str, Any]) -> Path:
    """The directory a failed write was for: the file's, else the data directory."""
    filename = getattr(exc, "filename", None)
    if filename:
        return Path(filename).parent
    return Path(kwargs.get("data_dir") or os.environ.get("APPLIANCE_DATA_DIR") or "var")


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn ApplianceError, and a full disk, into a clear message and exit code 1."""
    from ..registry.diskspace import is_disk_full, storage_error

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ApplianceError as exc:
            _fail(exc.message, bool(kwargs.get("as_json")))
        except (OSError, sqlite3.OperationalError) as exc:
            if not is_disk_full(exc):
                raise
            _fail(storage_error(exc, _where(exc, kwargs)).message, bool(kwargs.get("as_json")))

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


def _register_commands() -> None:
    # imported for their @main.command side effects
    from . import (  # noqa: F401
        audit,
        governance,
        hardware,
        lifecycle,
        models,
        package,
        scan,
        schedule,
        security,
        serve,
        tokens,
    )


_register_commands()
