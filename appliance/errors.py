"""Errors raised by the appliance; each carries the HTTP status it maps to.

    ApplianceError (500)
    ├── BadRequest (400)
    │   ├── SignatureMismatch (400)   a request does not fit the model's signature
    │   └── InvalidModelFile (400)    a file no installed backend can load
    ├── Unauthorized (401)
    ├── Forbidden (403)
    ├── NotFound (404)                unknown model or version
    ├── Conflict (409)
    ├── PayloadTooLarge (413)
    ├── UnsupportedMediaType (415)
    ├── ServiceUnavailable (503)      model not ready, queue full
    ├── InsufficientStorage (507)     the disk is full (a push or registry write)
    ├── GatewayTimeout (504)          the request's deadline passed before compute
    └── ConfigError (500)             bad settings or profile; the CLI exits non-zero

Every message says what is wrong and how to fix it: it goes to the client verbatim as
``{"error": message}``.
"""

from __future__ import annotations


class ApplianceError(Exception):
    """Base class: ``status`` is the HTTP status, ``message`` the text shown to the caller."""

    status: int = 500

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


class BadRequest(ApplianceError):
    status = 400


class SignatureMismatch(BadRequest):
    """The request's tensors do not match the model's declared inputs."""


class InvalidModelFile(BadRequest):
    """A file is corrupt, of an unknown format, or no installed backend loads it."""


class Unauthorized(ApplianceError):
    status = 401


class Forbidden(ApplianceError):
    status = 403


class NotFound(ApplianceError):
    status = 404


class Conflict(ApplianceError):
    status = 409


class PayloadTooLarge(ApplianceError):
    status = 413


class UnsupportedMediaType(ApplianceError):
    status = 415


class ServiceUnavailable(ApplianceError):
    status = 503


class InsufficientStorage(ApplianceError):
    """The disk (or quota) holding the data directory is full; the message says how much
    free space the operation needs."""

    status = 507


class GatewayTimeout(ApplianceError):
    status = 504


class ConfigError(ApplianceError):
    """Settings, a profile or a plugin is misconfigured."""

    status = 500
