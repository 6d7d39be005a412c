"""Why a box refused what the hub, a mirror or a bundle served it.

    ApplianceError
    └── SyncRefused (502)   ``kind`` says which attack or failure, ``message`` what to do

``refusal`` turns the errors of ``tuf.ngclient`` into one: the kinds are

=============== ====================================================================
rollback        metadata older than what this box already verified
freeze          a timestamp that has expired: a mirror serves a frozen repository
mix-and-match   metadata files from different repository states (versions or hashes
                that do not match the snapshot or timestamp naming them)
bad-hash        a target whose bytes do not match its signed length and hashes
too-large       more bytes than the signed metadata (or the client's limit) allows
bad-signature   metadata not signed by a threshold of the keys trusted for it
unreachable     the hub or bundle could not be read (network, HTTP status, missing file)
expired         root, snapshot, targets or a bin past its expiry: the hub must re-sign
other           anything else (malformed metadata, a local disk error)
=============== ====================================================================

Which ``BadVersionNumberError`` is a rollback and which a mix-and-match is told from its
message; the wording is that of python-tuf 7.0.1, pinned in pyproject.toml.
"""

from __future__ import annotations

import re
from typing import Literal, get_args

from tuf.api import exceptions as tuf_errors
from tuf.api.serialization import DeserializationError

from appliance.errors import ApplianceError

Kind = Literal[
    "rollback",
    "freeze",
    "mix-and-match",
    "bad-hash",
    "too-large",
    "bad-signature",
    "unreachable",
    "expired",
    "other",
]
KINDS: tuple[str, ...] = get_args(Kind)

_KEPT = "the box keeps its last verified state"
_ROOT_VERSION = re.compile(r"Expected root version (\d+) instead got version (\d+)")
_ROLLBACK = re.compile(r"must be >=|^Expected \S+\.json version ")


class SyncRefused(ApplianceError):
    """The box refused an update; ``kind`` is one of ``KINDS``."""

    status = 502

    def __init__(self, kind: Kind, message: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown refusal kind {kind!r}: expected one of {KINDS}")
        super().__init__(message)
        self.kind: Kind = kind


def refusal(exc: BaseException, *, source: str, target: str | None = None) -> SyncRefused:
    """The SyncRefused for an error raised while reading from ``source`` (a URL or
    bundle); ``target`` is the target path when the error came from downloading it."""
    detail = str(exc) or type(exc).__name__
    what = f"target {target}" if target else "the hub's metadata"
    if isinstance(exc, tuf_errors.DownloadLengthMismatchError):
        return SyncRefused(
            "too-large",
            f"refused {what} from {source}: it sent more bytes than the signed metadata "
            f"allows ({detail}); endless or padded data, {_KEPT}",
        )
    if isinstance(exc, tuf_errors.DownloadError):
        status = getattr(exc, "status_code", None)
        cause = f"HTTP {status}" if status else detail
        if exc.__cause__ is not None and not status:
            cause = f"{detail}: {exc.__cause__}"
        return SyncRefused(
            "unreachable",
            f"could not read {what} from {source} ({cause}); check the hub URL, the network "
            f"or the bundle, {_KEPT}",
        )
    if isinstance(exc, tuf_errors.ExpiredMetadataError):
        if "timestamp" in detail:
            return SyncRefused(
                "freeze",
                f"refused {what} from {source}: {detail} — a mirror is serving a frozen "
                "repository, or the hub's refresh job has stopped (check it runs and that "
                f"this box's clock is right); {_KEPT}",
            )
        return SyncRefused(
            "expired",
            f"refused {what} from {source}: {detail} — the hub must re-sign it (root and "
            f"targets with the offline keys: renew_offline_roles); {_KEPT}",
        )
    if isinstance(exc, tuf_errors.UnsignedMetadataError):
        return SyncRefused(
            "bad-signature",
            f"refused {what} from {source}: not signed by enough trusted keys ({detail}); "
            f"forged metadata or a revoked key, {_KEPT}",
        )
    if isinstance(exc, tuf_errors.BadVersionNumberError):
        return SyncRefused(_version_kind(detail), _version_message(what, source, detail))
    if isinstance(exc, tuf_errors.LengthOrHashMismatchError):
        if target:
            return SyncRefused(
                "bad-hash",
                f"refused {what} from {source}: its bytes do not match the length and "
                f"sha256 the hub signed ({detail}); the file was replaced or tampered with "
                f"on the server, {_KEPT}",
            )
        return SyncRefused(
            "mix-and-match",
            f"refused {what} from {source}: a metadata file does not match the hash the "
            f"snapshot or timestamp signed for it ({detail}); files from different "
            f"repository states are being mixed, {_KEPT}",
        )
    if isinstance(exc, DeserializationError):
        return SyncRefused(
            "other", f"refused {what} from {source}: not valid TUF metadata ({detail})"
        )
    if isinstance(exc, tuf_errors.RepositoryError):
        return SyncRefused("other", f"refused {what} from {source}: {detail}; {_KEPT}")
    if isinstance(exc, OSError):
        return SyncRefused(
            "other",
            f"could not store {what} from {source} on this box ({detail}); check the sync "
            "folders' free space and permissions",
        )
    return SyncRefused("other", f"sync with {source} failed: {type(exc).__name__}: {detail}")


def _version_kind(detail: str) -> Kind:
    root = _ROOT_VERSION.search(detail)
    if root is not None:
        return "rollback" if int(root.group(2)) < int(root.group(1)) else "mix-and-match"
    return "rollback" if _ROLLBACK.search(detail) else "mix-and-match"


def _version_message(what: str, source: str, detail: str) -> str:
    if _version_kind(detail) == "rollback":
        return (
            f"refused {what} from {source}: it is older than what this box has already "
            f"verified ({detail}); a mirror or proxy is replaying an old repository "
            f"state, {_KEPT}"
        )
    return (
        f"refused {what} from {source}: a metadata file's version does not match the "
        f"version the snapshot or timestamp names ({detail}); files from different "
        f"repository states are being mixed, {_KEPT}"
    )
