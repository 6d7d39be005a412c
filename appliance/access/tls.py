"""HTTPS and mutual TLS: uvicorn settings, the client certificate in the ASGI scope, and
the mapping from certificate subjects to identities.

uvicorn verifies a client certificate against ``ssl_ca_certs`` during the handshake but
does not hand it to the application. :class:`ClientCertProtocol` (the appliance's
limited httptools protocol, :mod:`appliance.http_protocol`, one hook added) reads the
verified peer certificate once per connection and puts it in every request's scope as the
ASGI TLS extension:

    scope["extensions"]["tls"] = {
        "client_cert_name": "CN=batch-scorer,O=Acme",   # RFC 4514, or None
        "client_cert_chain": ["-----BEGIN CERTIFICATE-----..."],
        "client_cert": {...},          # ssl.SSLSocket.getpeercert() form
        "client_cert_error": None, "tls_version": 0x0304, "server_cert": None,
        "cipher_suite": None,
    }

The handshake has finished when asyncio calls ``connection_made`` on an SSL transport,
so the certificate is there from the first request on.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from typing import Any, cast

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..errors import ConfigError
from ..http_protocol import LimitedHttpProtocol
from .auth_settings import AuthSettings
from .scopes import Identity

_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}


def tls_extension(transport: asyncio.BaseTransport) -> dict[str, Any] | None:
    """The ASGI TLS extension for a connection, or None over plain HTTP."""
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    name, chain = None, []
    if der:
        cert = x509.load_der_x509_certificate(der)
        name = cert.subject.rfc4514_string()
        chain = [cert.public_bytes(serialization.Encoding.PEM).decode()]
    return {"server_cert": None, "client_cert_chain": chain, "client_cert_name": name,
            "client_cert": ssl_object.getpeercert() if der else None,
            "client_cert_error": None,
            "tls_version": _TLS_VERSIONS.get(ssl_object.version() or ""),
            "cipher_suite": None}


class ClientCertProtocol(LimitedHttpProtocol):
    """The limited httptools protocol, adding the TLS extension to each request's scope
    (bind the limits with ``ClientCertProtocol.with_limits(settings.http)``)."""

    _tls: dict[str, Any] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._tls = tls_extension(transport)  # before a refusal can close it
        super().connection_made(transport)

    def on_message_begin(self) -> None:
        super().on_message_begin()  # builds self.scope for the new request
        if self._tls is not None:
            scope = cast(dict[str, Any], self.scope)
            scope.setdefault("extensions", {})["tls"] = self._tls


def client_cert_name(scope: Mapping[str, Any]) -> str | None:
    """The verified client certificate's subject (RFC 4514), if the client sent one."""
    tls = (scope.get("extensions") or {}).get("tls") or {}
    name = tls.get("client_cert_name")
    return name if isinstance(name, str) and name else None


def uvicorn_tls_kwargs(auth: AuthSettings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.Config``: none without ``tls_cert``; with it HTTPS,
    and with ``tls_client_ca`` client certificates too. Client certificates are optional
    (``CERT_OPTIONAL``) so Bearer-token clients still connect; a certificate that is sent
    must verify against the CA or the handshake fails. Includes ``http``
    (:class:`ClientCertProtocol` with the default limits; ``serve`` binds the configured
    ones with ``.with_limits(settings.http)``)."""
    if auth.tls_cert is None or auth.tls_key is None:
        return {}
    for label, path in (("tls_cert", auth.tls_cert), ("tls_key", auth.tls_key),
                        ("tls_client_ca", auth.tls_client_ca)):
        if path is not None and not path.is_file():
            raise ConfigError(f"auth.{label} {path} does not exist")
    kwargs: dict[str, Any] = {"ssl_certfile": str(auth.tls_cert),
                              "ssl_keyfile": str(auth.tls_key), "http": ClientCertProtocol}
    if auth.tls_client_ca is not None:
        kwargs.update(ssl_ca_certs=str(auth.tls_client_ca), ssl_cert_reqs=ssl.CERT_OPTIONAL)
    return kwargs


def _attributes(name: x509.Name) -> set[tuple[str, str]]:
    return {(a.oid.dotted_string, str(a.value)) for a in name}


class SubjectMap:
    """``mtls_subjects``: a key matches a certificate whose subject has every attribute
    the key names ("CN=scorer" matches "CN=scorer,O=Acme"); the scopes of every matching
    key are granted. Only certificates signed by ``tls_client_ca`` get this far."""

    def __init__(self, subjects: Mapping[str, list[str]]) -> None:
        self._entries: list[tuple[set[tuple[str, str]], frozenset[str]]] = []
        for key, scopes in subjects.items():
            try:
                attributes = _attributes(x509.Name.from_rfc4514_string(key))
            except ValueError as exc:
                raise ConfigError(f"auth.mtls_subjects: {key!r} is not an RFC 4514 name "
                                  f"like \"CN=scorer,O=Acme\": {exc}") from None
            if not attributes:
                raise ConfigError("auth.mtls_subjects: an empty subject would match every "
                                  "client certificate; name at least CN=...")
            self._entries.append((attributes, frozenset(scopes)))

    def identity(self, subject: str) -> Identity | None:
        """The identity of a verified certificate subject, or None if no key matches."""
        try:
            have = _attributes(x509.Name.from_rfc4514_string(subject))
        except ValueError:
            return None
        matched = [scopes for want, scopes in self._entries if want <= have]
        if not matched:
            return None
        return Identity(subject, frozenset().union(*matched), (), "mtls")
