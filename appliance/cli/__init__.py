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

from ..datadir import check_data_dir, permission_error
from ..errors import ApplianceError
from ..logging_setup import setup_logging as setup_logging
from ..settings import Settings, load_settings

log = logging.getLogger("appliance")


def settings_from(ctx: click.Context, **cli: Any) -> Settings:
    """The settings for a command; a command that takes ``--data-dir`` opens the data
    directory, so it is checked here (writable by this user, or creatable)."""
    config = ctx.obj.get("config") if ctx.obj else None
    settings = load_settings(cli, config=config)
    if "data_dir" in cli:
        check_data_dir(settings.data_dir)
    return settings


def echo_result(result: Any, as_json: bool, text: str) -> None:
    """Print ``result`` as JSON with ``--json``, else the human ``text``."""
    click.echo(json.dumps(result, indent=2) if as_json else text)


def _fail(message: str, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"error": message}))
    else:
        click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _data_dir(kwargs: dict[str, Any]) -> Path:
    return Path(kwargs.get("data_dir") or os.environ.get("APPLIANCE_DATA_DIR") or "var")


def _where(exc: BaseException, kwargs: dict[str, Any]) -> Path:
    """The directory a failed write was for: the file's, else the data directory."""
    filename = getattr(exc, "filename", None)
    if filename:
        return Path(filename).parent
    return _data_dir(kwargs)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn ApplianceError, a full disk and a data directory this user may not write
    into a clear message and exit code 1."""
    from ..registry.diskspace import is_disk_full, storage_error

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ApplianceError as exc:
            _fail(exc.message, bool(kwargs.get("as_json")))
        except (OSError, sqlite3.OperationalError) as exc:
            as_json = bool(kwargs.get("as_json"))
            if is_disk_full(exc):
                _fail(storage_error(exc, _where(exc, kwargs)).message, as_json)
            denied = permission_error(exc, _data_dir(kwargs))
            if denied is None:
                raise
            _fail(denied.message, as_json)

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
        alerts,
        audit,
        bundle,
        drift,
        governance,
        hardware,
        hub,
        hub_rollouts,
        lifecycle,
        models,
        package,
        routes,
        scan,
        schedule,
        security,
        serve,
        sync,
        tokens,
    )


_register_commands()
