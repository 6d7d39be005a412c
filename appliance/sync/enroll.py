"""``appliance sync enroll HUB_URL TOKEN``: make the device identity, register it with the
hub, and keep what the hub answers.

Order: the identity is loaded or made (:mod:`.identity`); ``POST {hub}/v1/enroll`` sends
the one-time token, both public keys and the hardware facts; the answer's root metadata
is checked to be a TUF root signed by its own threshold of keys; then ``root.json`` and
``enrollment.json`` are written atomically, the record last (:mod:`.state`). A refused
token (401) is one clear error and writes nothing. A box already enrolled is refused
unless ``force``: re-enrolling makes a new device (new keys, a new report sequence; the
old key files and outbox are renamed aside) and replaces the trust anchor, and the old
TUF metadata cache is cleared with it (it belongs to the other root). A box whose keys
are derived from a plugin's box key cannot get new ones: the hub refuses its second
enrolment (409) unless the operator removed the device there.
"""

from __future__ import annotations

import base64
import binascii
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from ..errors import ApplianceError, BadRequest, Conflict
from .hub_api import HubRefused, post_enroll
from .identity import ENCRYPTION_FILE, SIGNING_FILE, DeviceIdentity, load_identity
from .outbox import OUTBOX_FILE
from .settings import check_hub_url
from .state import (
    DOWNLOADS_DIR,
    METADATA_DIR,
    Enrollment,
    enrollment_of,
    write_enrollment,
)

if TYPE_CHECKING:
    from ..settings import Settings
    from .identity import BoxKeyProvider

__all__ = ["EnrollmentRefused", "check_root", "enroll"]


class EnrollmentRefused(ApplianceError):
    """The hub did not accept the enrolment token."""

    status = 401


def check_root(root: bytes) -> int:
    """The version of the TUF root metadata ``root``; BadRequest unless it is a root
    signed by a threshold of its own root keys."""
    from tuf.api.exceptions import UnsignedMetadataError
    from tuf.api.metadata import Metadata, Root

    try:
        md = Metadata[Root].from_bytes(root)
    except Exception as exc:  # DeserializationError, and whatever a broken file raises
        raise BadRequest(f"the hub's root metadata does not parse as TUF metadata: {exc}"
                         ) from None
    if not isinstance(md.signed, Root):
        raise BadRequest(f"the hub sent {md.signed.type!r} metadata where its root belongs")
    try:
        md.signed.verify_delegate(Root.type, md.signed_bytes, md.signatures)
    except UnsignedMetadataError as exc:
        raise BadRequest(f"the hub's root metadata is not signed by its own root keys: {exc}"
                         ) from None
    return int(md.signed.version)


def _decode_root(answer: dict[str, Any]) -> bytes:
    try:
        return base64.b64decode(str(answer["root"]), validate=True)
    except (KeyError, binascii.Error, ValueError):
        raise BadRequest("the hub's enrolment answer has no base64 'root' metadata") from None


def _retire(data_dir: Path, device_id: str) -> list[tuple[Path, Path]]:
    """Before a forced re-enrolment: set the old device's key files and outbox aside
    (renamed with its id, never deleted), so the box enrols with a new key (the hub
    knows a key once) and the new device's report sequence starts at 1. Stop the server
    first: it holds the outbox open. What was moved, to put back if enrolment fails."""
    sync = data_dir / "sync"
    moved = []
    for name in (SIGNING_FILE, ENCRYPTION_FILE, OUTBOX_FILE, f"{OUTBOX_FILE}-wal",
                 f"{OUTBOX_FILE}-shm"):
        path = sync / name
        if path.exists():
            aside = sync / f"{name}.{device_id}.retired"
            path.rename(aside)
            moved.append((path, aside))
    return moved


def _hardware(settings: Settings) -> dict[str, Any]:
    from ..plugins import get_plugin_manager
    from ..services import discover_hardware

    return discover_hardware(settings, get_plugin_manager()).report()


def _register(settings: Settings, hub_url: str, token: str, identity: DeviceIdentity,
              hardware: dict[str, Any] | None) -> tuple[Enrollment, bytes]:
    """POST the enrolment; the record to keep and the checked root metadata."""
    body = {"token": token, "signing_key": identity.signing_public,
            "encryption_key": identity.encryption_public,
            "hardware": hardware if hardware is not None else _hardware(settings)}
    try:
        answer = post_enroll(hub_url, body, settings.sync.timeout_s)
    except HubRefused as exc:
        if exc.status == 401:
            raise EnrollmentRefused(
                f"the hub at {hub_url} refused the enrolment token (invalid, expired or "
                "already used): ask the hub operator for a new one (`appliance hub "
                "enroll-token --group G`)") from None
        raise
    root = _decode_root(answer)
    check_root(root)
    try:
        device_id, group = str(answer["device_id"]), str(answer.get("group", ""))
    except KeyError:
        raise BadRequest("the hub's enrolment answer has no 'device_id'") from None
    metadata_url = urljoin(hub_url + "/", str(answer.get("metadata_url") or "repo/metadata/"))
    targets_url = (urljoin(hub_url + "/", str(answer["targets_url"]))
                   if answer.get("targets_url") else urljoin(metadata_url, "../targets/"))
    return Enrollment(device_id=device_id, hub_url=hub_url,
                      metadata_url=metadata_url.rstrip("/"), group=group,
                      enrolled_at=datetime.now(UTC).isoformat(timespec="seconds"),
                      key_id=identity.key_id, targets_url=targets_url.rstrip("/")), root


def enroll(settings: Settings, hub_url: str, token: str, *, force: bool = False,
           hardware: dict[str, Any] | None = None,
           box_key_provider: BoxKeyProvider | None = None) -> Enrollment:
    """Enrol this box (``settings.data_dir``) with the hub at ``hub_url`` using the
    one-time ``token``; the stored :class:`Enrollment`. ``hardware`` defaults to this
    box's discovered facts and profile; ``box_key_provider`` to the plugins' box key.
    """
    try:
        hub_url = check_hub_url(hub_url, "HUB_URL")
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    if not token.strip():
        raise BadRequest("the enrolment token is empty: give the token from "
                         "`appliance hub enroll-token --group G`")
    data_dir = Path(settings.data_dir)
    existing = enrollment_of(data_dir)
    if existing is not None and not force:
        raise Conflict(f"this box is already enrolled with {existing.hub_url} as device "
                       f"{existing.device_id} (group {existing.group}); pass --force to "
                       "enrol it again (its TUF metadata cache is cleared)")
    if box_key_provider is None:
        from ..registry.opener import box_key_provider as plugin_provider

        box_key_provider = plugin_provider(None, data_dir)
    retired = _retire(data_dir, existing.device_id) if existing is not None else []
    try:
        identity = load_identity(data_dir, box_key_provider)
        enrollment, root = _register(settings, hub_url, token.strip(), identity, hardware)
    except BaseException:
        for original, aside in retired:  # the old enrolment stays as it was
            aside.rename(original)
        raise
    sync = data_dir / "sync"
    for stale in (METADATA_DIR, DOWNLOADS_DIR):  # trusted under the previous root only
        shutil.rmtree(sync / stale, ignore_errors=True)
    write_enrollment(data_dir, enrollment, root)
    return enrollment
