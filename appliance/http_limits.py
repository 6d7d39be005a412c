"""Limits on what one HTTP client may hold: connections, header size and count, and how
slowly a request may arrive (``[http]`` in the TOML file).

The protocol that enforces them is :mod:`appliance.http_protocol`; this module only holds
the settings and the descriptor arithmetic, so reading settings does not import uvicorn.

Connections are counted against the process's descriptor limit (``RLIMIT_NOFILE``): the
connection cap plus the health reserve plus :data:`FD_HEADROOM` (registry, model files,
logs) must fit under it, so ``accept()`` never runs out of descriptors. When it does, the
event loop (libuv's "EMFILE trick") resets new connections without telling anyone; under
the cap a connection gets a 503 it can read, and health probes keep a reserved slot.
"""

from __future__ import annotations

import resource
from typing import Annotated

import msgspec

from .errors import ConfigError

#: descriptors kept free for everything that is not a held client connection (registry
#: and audit databases, model files, logs); a quarter of it may go to refused connections
#: while their 503 is written
FD_HEADROOM = 128

_Positive = Annotated[int, msgspec.Meta(ge=1)]
_Seconds = Annotated[float, msgspec.Meta(gt=0)]


class HttpLimits(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``[http]``: defaults sized for an edge box (a few hundred clients at most)."""

    #: open client connections; beyond it a new connection is answered 503 and closed
    max_connections: _Positive = 1000
    #: extra connections kept for ``GET /v2/health/*`` once the cap is reached
    health_connections: Annotated[int, msgspec.Meta(ge=0)] = 16
    #: seconds a client has to send a whole request head (request line and headers)
    header_timeout_s: _Seconds = 10.0
    #: a request body must arrive at ``min_body_rate`` bytes/s, checked over windows of
    #: this many seconds (an idle body is cut off after one window)
    body_timeout_s: _Seconds = 10.0
    min_body_rate: Annotated[int, msgspec.Meta(ge=0)] = 1024
    #: request line plus headers, in bytes; more is answered 431 (414 for the URL alone)
    max_header_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 64 * 1024
    #: header lines per request; more is answered 431
    max_headers: _Positive = 100
    #: seconds an idle keep-alive connection stays open between requests
    keep_alive_s: _Seconds = 5.0


def descriptor_limit() -> int:
    """The soft ``RLIMIT_NOFILE`` of this process."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def raise_descriptor_limit() -> int:
    """Raise the soft descriptor limit to the hard one (what systemd's ``LimitNOFILE``
    sets) and return the new soft limit; left as it is where that is refused."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return soft
        return hard
    return soft


def connection_cap(limits: HttpLimits, nofile: int | None = None) -> int:
    """The connection cap in force: ``max_connections``, lowered so that the cap, the health
    reserve and :data:`FD_HEADROOM` fit under the descriptor limit."""
    nofile = descriptor_limit() if nofile is None else nofile
    room = nofile - FD_HEADROOM - limits.health_connections
    if room < 1:
        raise ConfigError(
            f"the descriptor limit ({nofile}) leaves no room for client connections: raise "
            f"it (LimitNOFILE= in the systemd unit, ulimit -n) above "
            f"{FD_HEADROOM + limits.health_connections + 1}")
    return min(limits.max_connections, room)
