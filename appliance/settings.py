"""Typed settings: defaults < TOML file < ``APPLIANCE_*`` environment < CLI flags.

The TOML file is named by ``--config`` or ``APPLIANCE_CONFIG``; a file so named must
exist. Without either, ``$CONFIGURATION_DIRECTORY/appliance.toml`` (systemd's
``ConfigurationDirectory=``), else ``/etc/appliance/appliance.toml``, is read if it
exists, and the defaults apply if it does not. Every field below can be set in it at top
level, e.g. ``port = 8080``. Environment variables are the field name upper-cased with
the ``APPLIANCE_`` prefix (``APPLIANCE_DATA_DIR``); the ``[logging]`` section has
``APPLIANCE_LOG_LEVEL``, ``APPLIANCE_LOG_FORMAT`` and ``APPLIANCE_ACCESS_LOG``.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import msgspec

from .access.auth_settings import AuthSettings
from .alerts.settings import AlertSettings
from .audit.settings import AuditSettings
from .drift.settings import DriftSettings
from .errors import ConfigError
from .http_limits import HttpLimits
from .lifecycle.settings import LifecycleSettings
from .logging_setup import LoggingSettings
from .monitoring.settings import MetricsSettings
from .probes.settings import ProbeSettings
from .routing.settings import RoutingSettings
from .sync.settings import SyncSettings
from .tracing.settings import TracingSettings

#: read when present and no file is named; its absence means the defaults
DEFAULT_CONFIG = Path("/etc/appliance/appliance.toml")


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
    #: the older spelling of ``[logging] level`` (kept equal to it after loading)
    log_level: str = "info"
    #: level, text or JSON format, access log (appliance/logging_setup.py)
    logging: LoggingSettings = msgspec.field(default_factory=LoggingSettings)
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
    #: /metrics, Server-Timing, histogram buckets, the failing-version rule (docs/monitoring.md)
    metrics: MetricsSettings = msgspec.field(default_factory=MetricsSettings)
    #: drift detection, feedback and KPI correlation (docs/drift.md)
    drift: DriftSettings = msgspec.field(default_factory=DriftSettings)
    #: alert grouping, inhibition, silences, escalation and sinks (docs/alerts.md)
    alerts: AlertSettings = msgspec.field(default_factory=AlertSettings)
    #: synthetic probes replaying the packages' golden examples (docs/probes.md)
    probes: ProbeSettings = msgspec.field(default_factory=ProbeSettings)
    #: OpenTelemetry traces of inference requests, with the otel extra (docs/monitoring.md)
    tracing: TracingSettings = msgspec.field(default_factory=TracingSettings)
    #: test-traffic marking, shadow limits, the routing thread (docs/routing.md)
    routing: RoutingSettings = msgspec.field(default_factory=RoutingSettings)
    #: fleet sync with a hub: URLs, interval and jitter, outbox bounds (appliance/sync/)
    sync: SyncSettings = msgspec.field(default_factory=SyncSettings)

    @property
    def registry_path(self) -> Path:
        return self.data_dir / "registry.db"

ENV_PREFIX = "APPLIANCE_"
#: environment variables of the ``[logging]`` section
LOGGING_ENV = {"APPLIANCE_LOG_FORMAT": "format", "APPLIANCE_ACCESS_LOG": "access_log"}


def _from_env(environ: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in Settings.__struct_fields__:
        key = ENV_PREFIX + field.upper()
        if key in environ and field != "logging":
            out[field] = environ[key]
    section = {name: environ[key] for key, name in LOGGING_ENV.items() if key in environ}
    if section:
        out["logging"] = section
    return out


def _fold_logging(layer: dict[str, Any]) -> dict[str, Any]:
    """A layer's top-level ``log_level`` is ``[logging] level`` unless that is given too."""
    if layer.get("log_level") is not None and isinstance(layer.get("logging", {}), dict):
        layer["logging"] = {"level": layer["log_level"], **layer.get("logging", {})}
    return layer


def _merge(into: dict[str, Any], layer: dict[str, Any]) -> None:
    """``into.update(layer)``, merging a section (a dict) key by key."""
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            into[key] = {**into[key], **value}
        else:
            into[key] = value


def _named_config(config: Path | None, environ: dict[str, str]) -> tuple[Path | None, str]:
    """The file to read and what named it; a default file that is absent is None."""
    if config is not None:
        return config, "--config or APPLIANCE_CONFIG"
    if environ.get("APPLIANCE_CONFIG"):
        return Path(environ["APPLIANCE_CONFIG"]), "APPLIANCE_CONFIG"
    default = (Path(environ["CONFIGURATION_DIRECTORY"].split(":")[0]) / "appliance.toml"
               if environ.get("CONFIGURATION_DIRECTORY") else DEFAULT_CONFIG)
    return (default, "") if default.exists() else (None, "")


def _from_file(path: Path, named_by: str = "") -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        hint = (f" (named by {named_by}): create it, or name no file to use the "
                "defaults") if named_by else ""
        raise ConfigError(f"config file {path} does not exist{hint}") from None
    except PermissionError:
        raise ConfigError(f"config file {path} is not readable by uid {os.getuid()}: let "
                          "this user read it (e.g. chgrp appliance, chmod 0640)") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory; name the file") from None
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
    path, named_by = _named_config(config, environ)
    if path is not None:
        _merge(merged, _fold_logging(_from_file(path, named_by)))
    _merge(merged, _fold_logging(_from_env(environ)))
    _merge(merged, _fold_logging({k: v for k, v in (cli or {}).items() if v is not None}))
    try:
        settings = msgspec.convert(merged, Settings, strict=False, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        where = f" (from {path}, APPLIANCE_* or a flag)" if path is not None else ""
        raise ConfigError(f"invalid setting: {exc}{where}") from None
    problem = settings.logging.problem()
    if problem:
        raise ConfigError(problem)
    settings.logging.level = (settings.logging.level or settings.log_level).lower()
    settings.logging.format = settings.logging.format.lower()
    settings.log_level = settings.logging.level
    if not 0 <= settings.port <= 65535:
        raise ConfigError(f"port must be between 0 and 65535, got {settings.port}")
    if settings.max_body_bytes < 1024:
        raise ConfigError("max_body_bytes must be at least 1024")
    return settings
