"""What the box keeps about its hub under ``<data_dir>/sync/``, each file written
atomically (a temporary file, fsync, rename, fsync of the directory):

- ``enrollment.json``: device id, group, hub URL, metadata URL, when, the key id; its
  presence is what "enrolled" means, and it is written last by an enrolment;
- ``root.json``: the hub's TUF root metadata received at enrolment, the trust anchor
  (``bootstrap``) of every refresh;
- ``state.json``: the last sync attempt and success, ``stale_since`` (the first failed
  attempt since the last success, kept across restarts), the last error and result.

The TUF client's own metadata cache is ``metadata/`` and its downloads ``downloads/``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .identity import sync_dir

__all__ = ["Enrollment", "SyncState", "enrollment_of", "read_state", "root_path",
           "write_atomic", "write_enrollment", "write_state"]

ENROLLMENT_FILE = "enrollment.json"
ROOT_FILE = "root.json"
STATE_FILE = "state.json"
METADATA_DIR = "metadata"
DOWNLOADS_DIR = "downloads"


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data``: readers see the old file or the new one, whole,
    also after a crash or power loss (private to the owner unless ``mode`` says else;
    the temporary file is 0600 from its creation)."""
    from ..hub.tuf_files import atomic_write

    atomic_write(path, data, mode=mode)


@dataclass(frozen=True)
class Enrollment:
    """This box as its hub knows it."""

    device_id: str
    hub_url: str
    metadata_url: str
    group: str
    enrolled_at: str
    key_id: str
    #: where targets are served (default: ``targets/`` beside ``metadata_url``)
    targets_url: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def root_path(data_dir: Path) -> Path:
    return Path(data_dir) / "sync" / ROOT_FILE


def enrollment_of(data_dir: Path) -> Enrollment | None:
    """The enrolment record, or None when the box is not enrolled; ConfigError when
    the file is damaged (re-enrol)."""
    path = Path(data_dir) / "sync" / ENROLLMENT_FILE
    try:
        doc = json.loads(path.read_bytes())
        return Enrollment(**{k: str(doc[k]) for k in Enrollment.__dataclass_fields__
                             if k in doc or k != "targets_url"})
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is damaged ({type(exc).__name__}: {exc}): enrol the box "
                          "again with `appliance sync enroll HUB_URL TOKEN --force`") from None


def write_enrollment(data_dir: Path, enrollment: Enrollment, root: bytes) -> None:
    """Store the root metadata, then the enrolment record (the commit point)."""
    directory = sync_dir(data_dir)
    write_atomic(directory / ROOT_FILE, root)
    write_atomic(directory / ENROLLMENT_FILE,
                 json.dumps(enrollment.to_dict(), indent=2, sort_keys=True).encode())


@dataclass
class SyncState:
    """The outcome of the latest cycles (epoch seconds; None: never)."""

    last_attempt_at: float | None = None
    last_success_at: float | None = None
    #: the first failed attempt since the last success: the box serves what it verified
    stale_since: float | None = None
    last_error: str | None = None
    #: the kind of the last refusal (a TUF attack or a bad bundle), else None
    last_refusal: str | None = None
    last_result: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_state(data_dir: Path) -> SyncState:
    """``state.json``, or a fresh state when there is none (or it is unreadable)."""
    path = Path(data_dir) / "sync" / STATE_FILE
    try:
        doc = json.loads(path.read_bytes())
        known = {k: doc[k] for k in SyncState.__dataclass_fields__ if k in doc}
        return SyncState(**known)
    except (OSError, ValueError, TypeError):
        return SyncState()


def write_state(data_dir: Path, state: SyncState) -> None:
    write_atomic(sync_dir(data_dir) / STATE_FILE,
                 json.dumps(state.to_dict(), indent=2, sort_keys=True).encode())
