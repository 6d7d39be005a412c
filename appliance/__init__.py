"""appliance: a plugin-based model-serving appliance (Open Inference Protocol v2).

The public surface for plugin authors: ``hookimpl``, the backend interface and the
errors. Everything else is internal and may change.
"""

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
from .signature import TensorSpec

__version__ = "0.1.0"

hookimpl = HookimplMarker("appliance")

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
    "hookimpl",
]
