"""Turn off the inference runtimes' own telemetry before any of them is imported.

A regulated site asks why a serving box holds analytics identifiers. Left alone, the
runtimes write them into ``$HOME`` (in a container: the data volume):

* ONNX Runtime (1DS telemetry on Linux since 1.25) writes a ``deviceid`` and an event
  cache ``onnxruntime.db`` under ``~/.cache/Microsoft/DeveloperTools/.onnxruntime/`` when
  it is imported. ``ORT_DISABLE_TELEMETRY=1`` set before the import turns all of it off
  (no uploader, no identifier, no cache), latched for the process.
* OpenVINO imports its model-conversion tools, which import ``openvino_telemetry`` and
  write a Google Analytics client id to ``~/intel/openvino_ga_cid`` (and ``~/intel/stats``).
  OpenVINO falls back to its built-in no-op stub when ``openvino_telemetry`` cannot be
  imported, so the package is blocked for this process (``sys.modules`` entry ``None``).

:func:`disable_runtime_telemetry` runs when ``appliance`` is imported, so every entry
point (server, CLI, plugins, tests) is covered. Both are opt-outs the runtimes document;
nothing else about them changes.
"""

from __future__ import annotations

import os
import sys

__all__ = ["disable_runtime_telemetry"]


def disable_runtime_telemetry() -> None:
    """Opt out of ONNX Runtime's and OpenVINO's telemetry for this process (idempotent).

    Call before ``onnxruntime`` or ``openvino`` is imported; a runtime imported earlier
    has already written its identifier.
    """
    os.environ["ORT_DISABLE_TELEMETRY"] = "1"
    sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
