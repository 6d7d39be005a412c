"""Typed settings: defaults < TOML file < ``APPLIANCE_*`` environment < CLI flags.

The TOML file is named by ``--config`` or ``APPLIANCE_CONFIG``; every field below can be
set in it at top level, e.g. ``port = 8080``. Environment variables are the field name
upper-cased with the ``APPLIANCE_`` prefix (``APPLIANCE_DATA_DIR``).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import msgspec

from .access.auth_settings import AuthSettings
from .audit.settings import AuditSettings
from .errors import ConfigError
from .http_limits import HttpLimits
from .lifecycle.settings import LifecycleSettings


class FreezeWindow(msgspec.Struct, kw_only=True):
    start: str
    end: str
    reason: str = ""


class ModelServing(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Per-model serving knobs, ``[models.<name>]`` in the TOML file."""

    #: rows per batch; 0 or 1 = dynamic batching off
    max_batch_size: int = 0
    max_queue_delay_us: int = 500
    preferred_batch_sizes: list[int] = msgspec.field(default_factory=list)
    #: waiting requests beyond this are refused with 503 + Retry-After
    max_queue_size: int = 256
    #: concurrent executions (worker threads; 0 = from the hardware profile)
    instances: int = 0
    #: default deadline of a request in ms (0 = none); X-Request-Timeout-Ms overrides
    timeout_ms: int = 0
    #: latency objective; with autoscale the controller steers towards it
    p95_target_ms: float = 0.0
    autoscale: bool = False
    min_instances: int = 1
    max_instances: int = 4
    min_queue_delay_us: int = 100
    max_queue_delay_us_limit: int = 10000


class Settings(msgspec.Struct, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("var")
    #: largest request body accepted, in bytes; larger bodies get 413
    max_body_bytes: int = 64 * 1024 * 1024
    #: register the bundled demo models when the registry is empty
    demo_models: bool = True
    #: a hardware profile name to use instead of the best match
    profile: str | None = None
    #: extra directories searched for hardware profiles
    profile_dirs: list[Path] = msgspec.field(default_factory=list)
    #: predict inline on the event loop when a model's warm-up latency is below this
    inline_threshold_us: int = 500
    log_level: str = "info"
    #: distinct approvers a version tagged impact=high needs before production
    approvals_required: int = 2
    #: no promotion to production inside these windows (ISO 8601 start/end, reason)
    freeze_windows: list[FreezeWindow] = msgspec.field(default_factory=list)
    #: seconds between the server's checks for registry changes made by other processes
    registry_poll_s: float = 1.0
    #: per-model serving configuration (batching, instances, deadlines, SLO)
    models: dict[str, ModelServing] = msgspec.field(default_factory=dict)
    #: the tamper-evident audit log (docs/security.md)
    audit: AuditSettings = msgspec.field(default_factory=AuditSettings)
    #: run scheduled work in this process (promotions, retention); one process per data dir
    scheduler: bool = True
    #: seconds a model may take to load and warm up before it is marked failed
    load_timeout_s: float = 120.0
    #: access control: tokens, scopes, TLS and mTLS (see appliance/access/auth_settings.py)
    auth: AuthSettings = msgspec.field(default_factory=AuthSettings)
    #: encrypt stored model files at rest (AES-256-GCM data keys wrapped by the box key)
    encrypt_artifacts: bool = True
    #: stage -> "required" | "optional": promotion to the stage needs a signed package
    signing_policy: dict[str, str] = msgspec.field(
        default_factory=lambda: {"production": "required"})
    #: connection cap, header limits and read timeouts (appliance/http_limits.py)
    http: HttpLimits = msgspec.field(default_factory=HttpLimits)
    #: consumer webhooks (allowlist, outbox retries) and package limits (docs/lifecycle.md)
    lifecycle: LifecycleSettings = msgspec.field(default_factory=LifecycleSettings)

    @property
    def registry_path(self) -> Path:
        return self.data_dir / "registry.db"

ENV_PREFIX = "APPLIANCE_"


def _from_env(environ: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in Settings.__struct_fields__:
        key = ENV_PREFIX + field.upper()
        if key in environ:
            out[field] = environ[key]
    return out


def _from_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - set(Settings.__struct_fields__))
    if unknown:
        raise ConfigError(f"config file {path}: unknown key(s) {', '.join(unknown)}; "
                          f"known keys: {', '.join(Settings.__struct_fields__)}")
    return data


def _dec_hook(type_: type, obj: Any) -> Any:
    if type_ is Path and isinstance(obj, str | Path):
        return Path(obj)
    raise NotImplementedError(f"cannot read {type_}")


def load_settings(cli: dict[str, Any] | None = None, *, config: Path | None = None,
                  environ: dict[str, str] | None = None) -> Settings:
    """Merge the layers and validate types; a bad value is a ConfigError naming the key."""
    environ = dict(os.environ) if environ is None else environ
    merged: dict[str, Any] = {}
    config = config or (Path(environ["APPLIANCE_CONFIG"]) if environ.get("APPLIANCE_CONFIG")
                        else None)
    if config is not None:
        merged.update(_from_file(config))
    merged.update(_from_env(environ))
    merged.update({k: v for k, v in (cli or {}).items() if v is not None})
    try:
        settings = msgspec.convert(merged, Settings, strict=False, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid setting: {exc}") from None
    if not 0 <= settings.port <= 65535:
        raise ConfigError(f"port must be between 0 and 65535, got {settings.port}")
    if settings.max_body_bytes < 1024:
        raise ConfigError("max_body_bytes must be at least 1024")
    return settings
