"""Access-control settings, ``[auth]`` in the TOML file, and when auth is on.

    [auth]
    mode = "auto"                  # "on", "off", or "auto": on unless bound to loopback
    roles_claim = "roles"          # or "groups", or a dotted path: "realm_access.roles"
    role_scopes = { ml-engineer = ["models:read", "models:promote"] }

    [[auth.issuers]]
    issuer = "https://login.example.com/realms/ml"
    audience = "appliance"
    jwks_url = "https://login.example.com/realms/ml/protocol/openid-connect/certs"

Tokens minted by ``appliance tokens issue`` (issuer ``local_issuer``, audience
``local_audience``) are trusted without configuration once the box's ``tokens`` key
exists. With ``tls_cert``/``tls_key`` the appliance serves HTTPS; with ``tls_client_ca``
it also asks for client certificates and maps their subjects through ``mtls_subjects``.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

import msgspec

from ..errors import ConfigError
from .scopes import check_scopes


class IssuerSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One trusted token issuer and where its verification keys come from."""

    #: the token's ``iss`` claim, compared exactly
    issuer: str
    #: the ``aud`` this appliance accepts from this issuer (one of them must match)
    audience: str | list[str]
    #: PEM public keys (RSA, EC P-256/P-384 or Ed25519) or certificates
    pem_files: list[Path] = msgspec.field(default_factory=list)
    #: a JWKS document on disk, re-read when it changes
    jwks_file: Path | None = None
    #: a JWKS document over HTTPS (plain HTTP only to loopback), cached
    jwks_url: str | None = None
    #: seconds a fetched JWKS is used before it is fetched again
    jwks_refresh_s: float = 300.0
    #: a token naming an unknown ``kid`` refetches the JWKS at most this often, so
    #: invented key ids cannot make the appliance hammer the issuer
    jwks_min_refresh_s: float = 10.0
    #: a file holding an HMAC secret: only then are HS256 tokens accepted from this issuer
    shared_secret_file: Path | None = None


class AuthSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    mode: Literal["auto", "on", "off"] = "auto"
    issuers: list[IssuerSettings] = msgspec.field(default_factory=list)
    #: the claim holding the caller's roles (a dotted path reaches into nested objects)
    roles_claim: str = "roles"
    #: scopes granted by each role
    role_scopes: dict[str, list[str]] = msgspec.field(default_factory=dict)
    #: ``iss`` of the tokens ``appliance tokens issue`` mints
    local_issuer: str = "appliance-local"
    #: ``aud`` of those tokens
    local_audience: str = "appliance"
    #: seconds of clock skew tolerated on exp, nbf and iat
    leeway_s: float = 30.0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: CA bundle that signs client certificates; setting it turns mTLS on
    tls_client_ca: Path | None = None
    #: client certificate subject (RFC 4514, e.g. "CN=batch-scorer,O=Acme") -> scopes
    mtls_subjects: dict[str, list[str]] = msgspec.field(default_factory=dict)


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the port on this machine ("" and 0.0.0.0 do not)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def auth_enabled(auth: AuthSettings, host: str) -> bool:
    """``on`` and ``off`` say so; ``auto`` is on unless the appliance binds loopback only."""
    if auth.mode == "auto":
        return not is_loopback(host)
    return auth.mode == "on"


def open_warning(auth: AuthSettings, host: str) -> str | None:
    """The warning to log at start when auth is off, or None when it is on."""
    if auth_enabled(auth, host):
        return None
    if is_loopback(host):
        return (f"AUTH IS OFF: the appliance listens on loopback ({host}) with auth.mode = "
                f"\"{auth.mode}\", so any process or user on this machine can infer, promote, "
                "approve and delete models. Set auth.mode = \"on\" (and mint a token with "
                "`appliance tokens issue`) to require tokens here too.")
    return (f"AUTH IS OFF ON A NETWORK ADDRESS: the appliance listens on {host or '*'} with "
            "auth.mode = \"off\": ANYONE WHO CAN REACH THIS PORT can infer, promote, approve "
            "and delete models. Set auth.mode = \"on\" or \"auto\", or bind 127.0.0.1.")


def check_auth_settings(auth: AuthSettings) -> None:
    """ConfigError for settings that would fail later or grant something unintended."""
    for role, scopes in auth.role_scopes.items():
        check_scopes(scopes, f"auth.role_scopes.{role}")
    for subject, scopes in auth.mtls_subjects.items():
        check_scopes(scopes, f"auth.mtls_subjects[{subject!r}]")
    seen: set[str] = set()
    for issuer in auth.issuers:
        where = f"auth.issuers[{issuer.issuer!r}]"
        if issuer.issuer in seen or issuer.issuer == auth.local_issuer:
            raise ConfigError(f"{where}: issuer configured twice (the local issuer "
                              f"{auth.local_issuer!r} is built in); give each issuer once")
        seen.add(issuer.issuer)
        if not (issuer.pem_files or issuer.jwks_file or issuer.jwks_url
                or issuer.shared_secret_file):
            raise ConfigError(f"{where}: no keys; set pem_files, jwks_file, jwks_url or "
                              "shared_secret_file")
        if not issuer.audience:
            raise ConfigError(f"{where}: audience is empty; set the audience your issuer "
                              "puts in tokens meant for this appliance")
        if issuer.jwks_url is not None:
            check_jwks_url(issuer.jwks_url, where)
        if issuer.jwks_refresh_s <= 0 or issuer.jwks_min_refresh_s < 0:
            raise ConfigError(f"{where}: jwks_refresh_s must be > 0 and jwks_min_refresh_s "
                              ">= 0")
    if (auth.tls_cert is None) != (auth.tls_key is None):
        raise ConfigError("auth.tls_cert and auth.tls_key go together: set both or neither")
    if auth.tls_client_ca is not None and auth.tls_cert is None:
        raise ConfigError("auth.tls_client_ca needs auth.tls_cert and auth.tls_key: client "
                          "certificates are only asked for over HTTPS")
    if auth.mtls_subjects and auth.tls_client_ca is None:
        raise ConfigError("auth.mtls_subjects needs auth.tls_client_ca, the CA that signs the "
                          "client certificates")


def check_jwks_url(url: str, where: str) -> None:
    """HTTPS, or plain HTTP to a loopback address (a local IdP or a test)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname or "")):
        return
    raise ConfigError(f"{where}: jwks_url {url!r} must be https:// (plain http:// is "
                      "accepted only to a loopback address): keys fetched in the clear could "
                      "be swapped by anyone on the path")
