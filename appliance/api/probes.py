"""``GET /v1/probes``: the last synthetic probe of every served version, or why it is not
probed (appliance/probes/, docs/probes.md). Read-only, ``models:read``."""

from __future__ import annotations

import msgspec
from litestar import get

from ..access.scopes import READ
from ..probes.exposure import probe_status
from .auth import requires
from .registry_access import AnyRequest
from .state import services_of


class ProbeEntry(msgspec.Struct, kw_only=True):
    model: str
    version: str
    stage: str
    #: golden examples the version's package declares (0: it is not probed)
    examples: int
    probed: bool
    #: every example matched at the last probe (null: not probed yet)
    ok: bool | None
    #: what the last probe found, or why the version is not probed
    detail: str
    #: when the last probe started and how long it took (epoch seconds, seconds)
    at: float | None
    duration_s: float | None
    #: when the next probe is due (epoch seconds; null: at the next tick)
    next_at: float | None


class ProbeList(msgspec.Struct, kw_only=True):
    #: [probes] enabled
    enabled: bool
    probes: list[ProbeEntry]


@get("/v1/probes", summary="Synthetic probes: the last result per served version",
     tags=["monitoring"], guards=[requires(READ)])
async def list_probes(request: AnyRequest) -> ProbeList:
    services = services_of(request)
    entries = probe_status(services.repository, services.probes)
    return ProbeList(enabled=services.probes is not None,
                     probes=[msgspec.convert(e, ProbeEntry) for e in entries])


PROBE_ROUTES = [list_probes]
