"""``appliance sync import-bundle DIR``: an air-gapped site's sync from a directory.

``appliance hub export-bundle --group G DIR`` writes the TUF metadata and the targets a
group's boxes need (a USB stick). Importing it runs the very cycle of :mod:`.cycle` with
the same TUF client, over the directory (``DirectoryFetcher``) instead of HTTP: the root
stored at enrolment, the metadata cache (so nothing older than what the box has seen is
accepted, whichever way it came), hashes and lengths, the same install and promotion.
The cache it leaves is where the next online sync starts from, and a version installed
from the bundle is registered, so it is neither downloaded nor installed again.

Differences from an online cycle: no network is touched (the report is queued in the
outbox for the next online sync, or the next bundle's return trip), and every refusal is
a refusal: an expired bundle is an attack to name, not a hub that is away. A bundle with
a missing or tampered file installs nothing.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import BadRequest
from .box import Box
from .cycle import Client, CycleResult, hub_client, run_cycle
from .state import Enrollment

__all__ = ["import_bundle"]


def import_bundle(box: Box, directory: Path) -> CycleResult:
    """Verify the bundle in ``directory`` and apply it to ``box`` (module docstring)."""
    from .tuf_client import DirectoryFetcher

    directory = Path(directory)
    if not (directory / "metadata").is_dir():
        raise BadRequest(f"{directory} is not a sync bundle (no metadata/ folder): give the "
                         "directory `appliance hub export-bundle --group G DIR` wrote")

    def over_directory(data_dir: Path, enrollment: Enrollment, root: bytes) -> Client:
        return hub_client(data_dir, enrollment, root, fetcher=DirectoryFetcher(directory))

    box.progress(f"importing the bundle in {directory}")
    return run_cycle(box, client_factory=over_directory, send=False,
                     offline_kinds=frozenset())
