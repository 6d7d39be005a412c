"""Enrolment: one-time, expiring tokens an operator hands to a box, and the box's first
call with one.

A token is 32 random bytes, URL-safe base64; the hub stores only its sha256, so a copy of
the database enrols nothing. :func:`enroll` spends the token and registers the box's two
public keys in one transaction: the Ed25519 key that signs its reports and the X25519
key that package data keys are wrapped to. The answer carries the hub's current TUF
root, which the box keeps as its trust anchor. A refused token is Unauthorized (401)
saying which of invalid, expired or already used it was; nothing is stored then.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from ..audit.records import iso, now_iso
from ..errors import BadRequest, Conflict, NotFound, Unauthorized
from ..security.trust import key_id
from . import store as db
from .audit_chain import append
from .rollout import desired_for
from .services import Hub

TOKEN_BYTES = 32
_FIX = "ask the hub operator for a new one (`appliance hub enroll-token --group G`)"


@dataclass(frozen=True)
class EnrolmentToken:
    """A token as issued: the secret itself is shown once, here, and never stored."""

    token: str
    group: str
    expires_at: str

    def to_dict(self) -> dict[str, str]:
        return {"token": self.token, "group": self.group, "expires_at": self.expires_at}


@dataclass(frozen=True)
class Enrolment:
    """What an enrolled box is told: its id, group, and the hub's root metadata."""

    device_id: str
    group: str
    root: bytes


def token_hash(token: str) -> str:
    """The sha256 (hex) under which a token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(hub: Hub, group: str, ttl_s: int | None = None, *,
                actor: str) -> EnrolmentToken:
    """A one-time token enrolling one box into ``group`` within ``ttl_s`` seconds
    (default ``enrolment_ttl_s``); recorded in the audit chain (its hash prefix only)."""
    settings = hub.settings
    ttl = settings.enrolment_ttl_s if ttl_s is None else ttl_s
    if not 0 < ttl <= settings.max_enrolment_ttl_s:
        raise BadRequest(f"ttl {ttl}s: an enrolment token lives 1 s to "
                         f"{settings.max_enrolment_ttl_s} s (max_enrolment_ttl_s)")
    token = secrets.token_urlsafe(TOKEN_BYTES)
    digest = token_hash(token)
    now = datetime.now(UTC)
    expires_at = iso(now + timedelta(seconds=ttl))
    with hub.store.write() as conn:
        if db.get_group(conn, group) is None:
            raise NotFound(f"no group {group!r} on this hub: create it with `appliance hub "
                           f"groups add {group}`")
        db.add_token(conn, token_sha256=digest, group=group, at=iso(now), by=actor,
                     expires_at=expires_at)
        append(conn, actor=actor, action="enrolment-token.issue",
               detail={"group": group, "expires_at": expires_at, "token_sha256": digest[:16]})
    return EnrolmentToken(token, group, expires_at)


def parse_public_key(text: Any, kind: type[Ed25519PublicKey] | type[X25519PublicKey],
                     field: str) -> Any:
    """An Ed25519 or X25519 public key from base64 of its raw 32 bytes or from PEM;
    BadRequest naming ``field``."""
    if not isinstance(text, str) or not text.strip():
        raise BadRequest(f"{field} is missing: send the public key as base64 of its raw "
                         "32 bytes, or as PEM")
    name = "Ed25519" if kind is Ed25519PublicKey else "X25519"
    try:
        if "BEGIN" in text:
            key: Any = serialization.load_pem_public_key(text.encode())
        else:
            key = kind.from_public_bytes(base64.b64decode(text.strip(), validate=True))
    except (ValueError, binascii.Error, TypeError):
        raise BadRequest(f"{field} is not an {name} public key (base64 of 32 raw bytes, or "
                         "PEM)") from None
    if not isinstance(key, kind):
        raise BadRequest(f"{field} is a {type(key).__name__}, not an {name} public key")
    return key


def _pem(key: Ed25519PublicKey | X25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _refusal(row: dict[str, Any] | None, now: str) -> str | None:
    """Why the stored token ``row`` cannot enrol a box now, or None if it can."""
    if row is None:
        return ("invalid enrolment token: this hub never issued it (check it was copied "
                f"whole); {_FIX}")
    if row["used_at"] is not None:
        return (f"enrolment token already used at {row['used_at']} (by device "
                f"{row['device_id']}): a token enrols one box; {_FIX}")
    if row["expires_at"] <= now:
        return f"enrolment token expired at {row['expires_at']}; {_FIX}"
    return None


def enroll(hub: Hub, token: str, signing_key: str, encryption_key: str,
           hardware: dict[str, Any] | None = None) -> Enrolment:
    """Enrol a box: spend ``token``, register its keys and ``hardware``, publish its
    first desired state (its group's current assignments); return its id and the hub's
    root metadata. Unauthorized for a token that is invalid, expired or used (nothing is
    stored then); Conflict for a signing key already enrolled."""
    if not isinstance(token, str) or not token.strip():
        raise Unauthorized(f"no enrolment token given; {_FIX}")
    signing = parse_public_key(signing_key, Ed25519PublicKey, "signing_key")
    encryption = parse_public_key(encryption_key, X25519PublicKey, "encryption_key")
    if hardware is not None and not isinstance(hardware, dict):
        raise BadRequest("hardware must be a JSON object (the box's facts and profile)")
    signing_id = key_id(signing)
    device_id = "box-" + signing_id[:20]
    digest, now = token_hash(token.strip()), now_iso()
    root = hub.repository.root_bytes()  # a broken repository fails before the token is spent
    with hub.store.write() as conn:
        row = db.get_token(conn, digest)
        refused = _refusal(row, now)
        if refused is not None or row is None:
            raise Unauthorized(refused or _FIX)
        existing = db.device_by_signing_key(conn, signing_id)
        if existing is not None:
            raise Conflict(f"this signing key is already enrolled as device "
                           f"{existing['id']} (group {existing['group_name']}); a box "
                           "enrols once, or with a new key after `appliance sync enroll "
                           "--force` made one")
        if not db.use_token(conn, digest, at=now, device_id=device_id):
            raise Unauthorized(f"enrolment token was used or expired a moment ago; {_FIX}")
        db.add_device(conn, id=device_id, group_name=row["group_name"],
                      signing_key=_pem(signing), signing_key_id=signing_id,
                      encryption_key=_pem(encryption), encryption_key_id=key_id(encryption),
                      enrolled_at=now, last_seen=now, hardware=hardware or {})
        append(conn, actor=f"device:{device_id}", action="device.enroll", at=now,
               detail={"device_id": device_id, "group": row["group_name"],
                       "token_sha256": digest[:16], "signing_key_id": signing_id,
                       "encryption_key_id": key_id(encryption)})
        # published before the commit: if signing fails, the token is not spent and the
        # box may simply try again
        device = db.get_device(conn, device_id)
        assert device is not None  # inserted just above
        hub.repository.set_desired(device_id, desired_for(hub, conn, device))
    return Enrolment(device_id, row["group_name"], root)
