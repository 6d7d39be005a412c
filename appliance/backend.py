"""The backend interface every inference plugin implements.

A :class:`Backend` says which model formats it loads and whether it can run on this
box; :meth:`Backend.load` turns a model file into a :class:`LoadedModel`, whose
``predict`` maps input arrays by name to output arrays by name. ``predict`` may be
called from several threads at once: a backend whose runtime is not thread-safe
guards itself (or keeps one interpreter per instance).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .errors import InvalidModelFile
from .signature import TensorSpec

#: file suffix -> model format name
SUFFIX_FORMATS = {".onnx": "onnx", ".xml": "openvino", ".tflite": "tflite"}


@dataclass(frozen=True)
class ModelSource:
    """Where a model version's bytes are. ``path`` is the primary file (``.onnx``,
    ``.xml`` with its ``.bin`` beside it, ``.tflite``); companion files (the IR's
    ``.bin``, ONNX external data) sit beside it and are read by name.

    When ``encrypted`` is true the files on disk are ciphertext: read them only through
    :meth:`read_bytes`, :meth:`read_file_bytes` and :meth:`read_file_buffer` (plaintext
    in memory), never by path, and write no plaintext copy (no compiled-model cache).
    """

    #: the files at ``path`` are encrypted at rest (see appliance.security.crypto_store)
    encrypted: ClassVar[bool] = False

    path: Path
    format: str

    def read_bytes(self) -> bytes:
        """The primary file's contents."""
        return self.read_file_bytes(self.path.name)

    def read_file_bytes(self, name: str) -> bytes:
        """The contents of the model's file ``name`` (e.g. the IR's ``.bin``)."""
        return self.companion(name).read_bytes()

    def read_file_buffer(self, name: str) -> bytearray:
        """Like :meth:`read_file_bytes`, as one writable buffer (numpy and OpenVINO can
        share it without a second copy)."""
        return bytearray(self.read_file_bytes(name))

    def companion(self, name: str) -> Path:
        """The path of the model's file ``name``: a bare file name beside the primary
        file, nothing else."""
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise InvalidModelFile(f"{name!r} is not a file name of this model")
        return self.path.parent / name


@dataclass
class Availability:
    """Whether a backend can run here; ``reason`` says why not (or what it found)."""

    available: bool
    reason: str = ""
    devices: list[str] = field(default_factory=list)


class LoadedModel(ABC):
    """A model version loaded by a backend and ready to predict."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    @abstractmethod
    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model: arrays by input name in, arrays by output name out."""
        raise NotImplementedError("LoadedModel.predict(inputs) must be implemented by the backend")

    def metadata(self) -> dict[str, Any]:
        """Backend facts shown in model metadata (backend, device, providers …)."""
        return {}

    def close(self) -> None:
        """Free the runtime's resources; the object is not used afterwards."""


class Backend(ABC):
    """An inference runtime. Subclasses set ``name`` and ``formats`` and implement ``load``."""

    name: str = ""
    formats: tuple[str, ...] = ()
    #: file suffixes (".toy") that mean this backend's first format, beyond the built-in ones
    suffixes: tuple[str, ...] = ()

    def availability(self) -> Availability:
        """Whether this backend's runtime is importable and has a device to run on."""
        return Availability(True)

    @abstractmethod
    def load(self, source: ModelSource, *, options: Mapping[str, Any]) -> LoadedModel:
        """Load ``source`` and return a :class:`LoadedModel`.

        Raise :class:`appliance.errors.InvalidModelFile` with a clear message when the
        file is corrupt or not a model this backend understands.
        """
        raise NotImplementedError("Backend.load(source, options=...) must be implemented")


def detect_format(path: Path, extra: dict[str, str] | None = None) -> str:
    """The model format of ``path`` from its suffix (and the TFLite magic bytes);
    ``extra`` maps more suffixes to formats (from installed backends)."""
    suffixes = {**SUFFIX_FORMATS, **(extra or {})}
    fmt = suffixes.get(path.suffix.lower())
    if fmt is None:
        with path.open("rb") as f:
            head = f.read(8)
        if head[4:8] == b"TFL3":
            return "tflite"
        known = ", ".join(sorted(suffixes))
        raise ValueError(f"cannot tell the model format of {path.name}: expected one of {known}")
    return fmt
