"""The two calls a box makes to its hub's own API (everything else is static TUF files):

    POST {hub}/v1/enroll    {"token", "signing_key", "encryption_key", "hardware"}
                            → {"device_id", "root", "metadata_url", "group"}
    POST {hub}/v1/reports   the exact JSON body, signed: X-Device-Id and
                            X-Device-Signature (base64 Ed25519 over the body bytes)
                            → {"ack": highest contiguous seq stored, "duplicate": bool}

Errors: :class:`HubUnreachable` (no answer: connection refused, DNS, timeout, TLS) and
:class:`HubRefused` (an answer that is not 2xx, with the hub's own ``error`` text and
its status: 401 an unknown key, a bad signature or a bad token; 413 too large). Both
are :class:`~appliance.errors.ApplianceError`, so the CLI prints them as one line.
"""

from __future__ import annotations

from typing import Any

import httpx

from ..errors import ApplianceError
from .identity import DeviceIdentity

__all__ = ["MAX_ANSWER_BYTES", "HubRefused", "HubUnreachable", "post_enroll",
           "post_reports"]

#: an answer larger than this is not read (a root metadata file is a few KiB)
MAX_ANSWER_BYTES = 4 * 1024 * 1024


class HubUnreachable(ApplianceError):
    """No answer from the hub."""

    status = 503


class HubRefused(ApplianceError):
    """The hub answered, but not with 2xx; ``status`` is its status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _client(timeout_s: float) -> httpx.Client:
    # no proxies from the environment and no redirects: the box talks to the URL it was
    # given, and a redirect would carry a signed body somewhere else
    return httpx.Client(trust_env=False, follow_redirects=False, timeout=timeout_s)


def _answer(response: httpx.Response, what: str) -> dict[str, Any]:
    if len(response.content) > MAX_ANSWER_BYTES:
        raise HubRefused(f"{what}: the hub's answer is {len(response.content)} bytes, more "
                         f"than the {MAX_ANSWER_BYTES} a box reads", 502)
    try:
        doc = response.json()
    except ValueError:
        doc = None
    if not 200 <= response.status_code < 300:
        said = doc.get("error") if isinstance(doc, dict) else None
        said = said or response.text[:200] or response.reason_phrase
        raise HubRefused(f"{what}: the hub answered {response.status_code}: {said}",
                         response.status_code)
    if not isinstance(doc, dict):
        raise HubRefused(f"{what}: the hub's answer is not a JSON object", 502)
    return doc


def _post(url: str, what: str, timeout_s: float, **kwargs: Any) -> dict[str, Any]:
    try:
        with _client(timeout_s) as client:
            response = client.post(url, **kwargs)
    except httpx.HTTPError as exc:
        raise HubUnreachable(f"{what}: hub {url} unreachable: {type(exc).__name__}: "
                             f"{exc or 'no answer'}") from None
    return _answer(response, what)


def post_enroll(hub_url: str, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """POST the enrolment ``body``; the hub's answer (HubRefused/HubUnreachable)."""
    return _post(f"{hub_url}/v1/enroll", "enrolment", timeout_s, json=body)


def post_reports(hub_url: str, device_id: str, identity: DeviceIdentity, body: bytes,
                 timeout_s: float) -> dict[str, Any]:
    """POST ``body`` (JSON bytes, sent exactly as signed) to the reports endpoint."""
    headers = {"Content-Type": "application/json", "X-Device-Id": device_id,
               "X-Device-Signature": identity.sign(body)}
    return _post(f"{hub_url}/v1/reports", "report upload", timeout_s, content=body,
                 headers=headers)
