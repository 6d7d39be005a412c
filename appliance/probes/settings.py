"""``[probes]`` settings: how often golden examples are replayed, and how close is equal.

    [probes]
    enabled = true
    probe_interval_s = 60.0    # between probes of a version that had production traffic
    idle_interval_s = 15.0     # between probes of a version that had none since the last
    tick_s = 1.0               # how often the probe thread looks for what is due
    timeout_s = 10.0           # one golden example's deadline
    atol = 1e-4                # absolute tolerance when a golden example gives no `atol`
    rtol = 1e-5                # relative tolerance, always added (numpy.isclose)
"""

from __future__ import annotations

from typing import Annotated

import msgspec

Seconds = Annotated[float, msgspec.Meta(gt=0)]
Tolerance = Annotated[float, msgspec.Meta(ge=0)]

__all__ = ["ProbeSettings"]


class ProbeSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Synthetic probes of the golden examples packages declare (docs/probes.md)."""

    #: run the probe thread at all (the push-time check of golden examples always runs)
    enabled: bool = True
    probe_interval_s: Seconds = 60.0
    #: used instead of ``probe_interval_s`` while the version has no production traffic:
    #: nothing else would notice it answering wrong
    idle_interval_s: Seconds = 15.0
    tick_s: Seconds = 1.0
    timeout_s: Seconds = 10.0
    atol: Tolerance = 1e-4
    rtol: Tolerance = 1e-5
