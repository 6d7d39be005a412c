"""appliance: a plugin-based model-serving appliance (Open Inference Protocol v2).

The public surface for plugin authors: ``hookimpl``, the backend interface, the errors
and :func:`discover_hardware`. Everything else is internal and may change.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pluggy import HookimplMarker

from .backend import Availability, Backend, LoadedModel, ModelSource
from .errors import (
    ApplianceError,
    BadRequest,
    ConfigError,
    InvalidModelFile,
    NotFound,
    ServiceUnavailable,
    SignatureMismatch,
)
from .runtime_telemetry import disable_runtime_telemetry
from .signature import TensorSpec

# before any backend imports its runtime (none of the imports above does)
disable_runtime_telemetry()

if TYPE_CHECKING:
    from .hardware.facts import HardwareFacts

__version__ = "0.1.0"

hookimpl = HookimplMarker("appliance")


def discover_hardware(root: Path = Path("/")) -> HardwareFacts:
    """This box's hardware facts (CPU, memory, NVIDIA GPUs, Jetson, Edge TPU) as the
    profiles see them, without plugin contributions. Imported lazily: ``import
    appliance`` stays cheap for plugins that never call it."""
    from .hardware.facts import discover

    return discover(root=root)

__all__ = [
    "ApplianceError",
    "Availability",
    "Backend",
    "BadRequest",
    "ConfigError",
    "InvalidModelFile",
    "LoadedModel",
    "ModelSource",
    "NotFound",
    "ServiceUnavailable",
    "SignatureMismatch",
    "TensorSpec",
    "__version__",
    "discover_hardware",
    "hookimpl",
]
