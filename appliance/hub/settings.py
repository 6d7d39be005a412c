"""The hub's settings: defaults < ``DIR/hub.toml`` < command-line flags.

    # hub.toml, in the hub's data directory (every key optional)
    host = "0.0.0.0"
    port = 8700
    database_url = "postgresql+psycopg://hub@db/hub"   # default: sqlite:///DIR/hub.db
    bins = 16                      # succinct hash bins of the per-device desired state
    report_max_bytes = 1048576     # a larger box report is refused with 413 unread
    refresh_minutes = 60           # re-sign timestamp and snapshot this often
    rollout_tick_s = 10            # the rollout controller advances or halts this often
    repository_url = "https://cdn.example.com/fleet"   # told to boxes at enrolment

    [auth]                         # appliance/access/auth_settings.py; mode is always on
    role_scopes = { fleet-ops = ["hub:read", "hub:operate"] }

Operator and CI tokens are checked as the appliance checks its own (scopes ``hub:read``,
``hub:operate``, ``hub:publish``); ``appliance hub token issue`` mints local ones, issuer
and audience ``appliance-hub`` so a box's local tokens are never valid here.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec

from ..access.auth_settings import AuthSettings, check_auth_settings
from ..errors import ConfigError
from ..http_limits import HttpLimits

HUB_TOML = "hub.toml"
DIR_ENV = "APPLIANCE_HUB_DIR"
HUB_ISSUER = "appliance-hub"


def _hub_auth() -> AuthSettings:
    return AuthSettings(mode="on", local_issuer=HUB_ISSUER, local_audience=HUB_ISSUER)


class HubSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Everything ``appliance hub`` reads; see the module docstring for the file."""

    #: the hub's data directory: hub.db, keys/, repo/ (metadata and targets)
    data_dir: Path = Path("hub")
    host: str = "127.0.0.1"
    port: int = 8700
    #: a SQLAlchemy URL; None is ``sqlite:///<data_dir>/hub.db``
    database_url: str | None = None
    #: hash bins of the per-device desired-state delegation (a power of two)
    bins: int = 16
    #: largest box report accepted, bytes (413 before the body is read)
    report_max_bytes: int = 1 << 20
    #: largest enrolment request, bytes
    enroll_max_bytes: int = 64 << 10
    #: largest package a publisher may upload, bytes
    publish_max_bytes: int = 64 << 30
    #: minutes between re-signing timestamp and snapshot (APScheduler, in ``serve``)
    refresh_minutes: float = 60.0
    #: run the re-signing and rollout jobs in ``appliance hub serve``
    scheduler: bool = True
    #: seconds between rollout controller ticks (advance, halt, complete)
    rollout_tick_s: float = 10.0
    #: default and longest lifetime of an enrolment token, seconds
    enrolment_ttl_s: int = 86400
    max_enrolment_ttl_s: int = 30 * 86400
    #: where boxes fetch metadata and targets (a CDN, object store or web server), told
    #: to a box at enrolment; None: the box uses ``<hub URL>/repo``
    repository_url: str | None = None
    #: also serve ``repo/`` (metadata, targets) under ``/repo`` from the hub process
    serve_repository: bool = True
    #: access control for operators and publishers (TLS and mTLS too)
    auth: AuthSettings = msgspec.field(default_factory=_hub_auth)
    #: connection cap, header limits and read timeouts of ``hub serve``
    http: HttpLimits = msgspec.field(default_factory=HttpLimits)

    @property
    def repo_dir(self) -> Path:
        return self.data_dir / "repo"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"


def _dec_hook(kind: type, value: Any) -> Any:
    if kind is Path and isinstance(value, str):
        return Path(value)
    raise NotImplementedError(f"cannot read {kind}")


def hub_dir(directory: Path | None) -> Path:
    """The hub directory: ``directory``, else ``$APPLIANCE_HUB_DIR``, else ``./hub``."""
    return Path(directory or os.environ.get(DIR_ENV) or "hub")


def load_hub_settings(directory: Path | None = None,
                      overrides: Mapping[str, Any] | None = None) -> HubSettings:
    """Settings of the hub in ``directory`` (see :func:`hub_dir`): its ``hub.toml`` if
    present, then ``overrides`` (flags; None values are ignored). ConfigError names the
    bad key."""
    root = hub_dir(directory)
    values: dict[str, Any] = {}
    path = root / HUB_TOML
    if path.is_file():
        try:
            values = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    values["data_dir"] = str(root)
    auth = values.get("auth")
    if isinstance(auth, dict):
        values["auth"] = {"local_issuer": HUB_ISSUER, "local_audience": HUB_ISSUER,
                          "mode": "on", **auth}
    try:
        settings = msgspec.convert(values, HubSettings, strict=False, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        where = path if path.is_file() else "hub settings"
        raise ConfigError(f"{where}: {exc}") from None
    check_hub_settings(settings)
    return settings


def check_hub_settings(settings: HubSettings) -> None:
    """ConfigError for values the hub cannot run with."""
    if not 0 <= settings.port < 65536:
        raise ConfigError(f"port {settings.port} is not a TCP port (1-65535, or 0 for any "
                          "free one)")
    if not 2 <= settings.bins <= 65536 or settings.bins & (settings.bins - 1):
        raise ConfigError(f"bins = {settings.bins}: succinct hash bins need a power of two "
                          "from 2 to 65536 (16, 32, 256, ...)")
    for name in ("report_max_bytes", "enroll_max_bytes", "publish_max_bytes",
                 "enrolment_ttl_s", "max_enrolment_ttl_s"):
        if getattr(settings, name) <= 0:
            raise ConfigError(f"{name} must be > 0, got {getattr(settings, name)}")
    if not 0.1 <= settings.rollout_tick_s <= 3600:
        raise ConfigError(f"rollout_tick_s = {settings.rollout_tick_s}: 0.1 to 3600 seconds")
    if settings.refresh_minutes <= 0:
        raise ConfigError(f"refresh_minutes must be > 0, got {settings.refresh_minutes}")
    if settings.auth.mode != "on":
        raise ConfigError(f"auth.mode = {settings.auth.mode!r}: the hub always requires "
                          "operator and publisher tokens; remove auth.mode from hub.toml")
    check_auth_settings(settings.auth)
