"""Synthetic probes: replay each package's golden examples and check the answers.

    settings.py   ``[probes]`` (ProbeSettings)
    golden.py     golden examples: checked against the signature at push, compared
    wire.py       an example as an Open Inference Protocol body, the answer as arrays
    runner.py     ProbeRunner: the schedule (a thread, an injectable clock), the results
    exposure.py   probe_success / probe_duration_seconds, the alert snapshot, health
                  reasons and ``GET /v1/probes``

This ``__init__`` imports only the settings: :mod:`appliance.settings` imports them,
and the runner pulls in the protocol codec. Import the rest from their modules.
docs/probes.md is the reference.
"""

from .settings import ProbeSettings

__all__ = ["ProbeSettings"]
