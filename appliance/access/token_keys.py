"""Where a trusted issuer's verification keys come from, and which algorithms each verifies.

The algorithms come from the key's type, never from a token's header (RFC 8725 section
2.1): see :func:`algorithms_for`. Sources:

    StaticSource     PEM files (a bare public key or a certificate) and an explicit HMAC
                     shared secret, read once
    JwksFileSource   a JWKS on disk, re-read when its mtime or size changes
    JwksUrlSource    a JWKS over HTTP(S), cached ``jwks_refresh_s``; an unknown ``kid``
                     refetches at most every ``jwks_min_refresh_s``; a failed fetch
                     keeps the keys fetched before
    LocalKeySource   the box's own ``tokens`` key, once ``appliance tokens issue`` made it

HMAC (``oct``) keys in a JWKS are skipped: a shared secret published in a key set would
let anyone mint tokens.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ..errors import ConfigError
from ..security.keys import KeyStore, check_private
from .auth_settings import IssuerSettings, is_loopback

# the logger these warnings had before the key sources left tokens.py: log lines and any
# per-logger configuration stay as they were
log = logging.getLogger("appliance.access.tokens")

#: key type -> the only algorithms it verifies
RSA_ALGORITHMS = frozenset({"RS256", "PS256"})
EC_ALGORITHMS = {"secp256r1": frozenset({"ES256"}), "secp384r1": frozenset({"ES384"})}
EDDSA = frozenset({"EdDSA"})
HMAC = frozenset({"HS256"})
MIN_RSA_BITS = 2048
MIN_SECRET_BYTES = 32
MAX_JWKS_BYTES = 1024 * 1024
#: after a failed JWKS fetch, try again this soon (or at jwks_refresh_s if sooner)
JWKS_RETRY_S = 30.0
LOCAL_KEY = "tokens"


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A public key (or explicit HMAC secret) and the algorithms it may verify."""

    key: Any
    algorithms: frozenset[str]
    kid: str | None = None


def algorithms_for(key: Any) -> frozenset[str]:
    """The algorithms a public key verifies, from its type alone; empty if unsupported."""
    if isinstance(key, rsa.RSAPublicKey):
        return RSA_ALGORITHMS if key.key_size >= MIN_RSA_BITS else frozenset()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return EC_ALGORITHMS.get(key.curve.name, frozenset())
    if isinstance(key, ed25519.Ed25519PublicKey):
        return EDDSA
    return frozenset()


def local_kid(public_key: ed25519.Ed25519PublicKey) -> str:
    """The ``kid`` of the box's token key: a short digest of its raw bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "local-" + hashlib.sha256(raw).hexdigest()[:16]


def pem_keys(path: Path) -> list[VerificationKey]:
    """The public key in a PEM file (a bare key or a certificate)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read issuer key {path}: {exc.strerror}") from None
    if b"PRIVATE KEY" in data:
        raise ConfigError(f"{path} holds a private key; give the issuer's public key "
                          "(openssl pkey -in KEY -pubout) and keep the private key off the box")
    try:
        key = (x509.load_pem_x509_certificate(data).public_key() if b"CERTIFICATE" in data
               else serialization.load_pem_public_key(data))
    except ValueError as exc:
        raise ConfigError(f"{path} is not a PEM public key or certificate: {exc}") from None
    algorithms = algorithms_for(key)
    if not algorithms:
        raise ConfigError(f"{path}: unsupported key ({type(key).__name__}); use RSA >= "
                          f"{MIN_RSA_BITS} bits, EC P-256/P-384 or Ed25519")
    return [VerificationKey(key, algorithms)]


def secret_key(path: Path) -> VerificationKey:
    """An issuer's explicit HMAC secret: the only way HS256 is ever accepted."""
    check_private(path)
    secret = path.read_bytes().strip()
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(f"shared secret {path} is {len(secret)} bytes; use at least "
                          f"{MIN_SECRET_BYTES} random bytes")
    return VerificationKey(secret, HMAC)


def jwks_keys(document: bytes) -> list[VerificationKey]:
    """The signature keys of a JWKS; ``oct`` (HMAC) keys and unusable keys are skipped:
    a shared secret published in a key set would let anyone mint tokens."""
    data = json.loads(document)
    entries = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError("not a JWKS: no \"keys\" list")
    out = []
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") == "oct":
            continue
        if entry.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK(entry).key
        except jwt.PyJWTError as exc:
            log.warning("JWKS key %s skipped: %s", entry.get("kid"), exc)
            continue
        algorithms = algorithms_for(key)
        if isinstance(entry.get("alg"), str):
            algorithms &= {entry["alg"]}
        kid = entry.get("kid")
        if algorithms:
            out.append(VerificationKey(key, algorithms, kid if isinstance(kid, str) else None))
    return out


class KeySource:
    """Where an issuer's keys come from; ``problem`` says why it has none, if so."""

    problem: str | None = None

    def current(self) -> list[VerificationKey]:
        raise NotImplementedError

    def refresh_for(self, kid: str) -> bool:
        """Look again for a key named ``kid``; True when something was refetched."""
        return False

    def fetch_due(self, kid: str | None) -> bool:
        """Whether :meth:`current` or :meth:`refresh_for` would go to the network now."""
        return False


class StaticSource(KeySource):
    def __init__(self, keys: list[VerificationKey]) -> None:
        self._keys = keys

    def current(self) -> list[VerificationKey]:
        return self._keys


class JwksFileSource(KeySource):
    """A JWKS on disk, re-read when its mtime or size changes (a rotation by copy)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._keys: list[VerificationKey] = []
        if not path.is_file():
            raise ConfigError(f"jwks_file {path} does not exist")
        self.current()
        if self.problem:
            raise ConfigError(self.problem)

    def current(self) -> list[VerificationKey]:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp != self._stamp:
                self._keys, self._stamp, self.problem = jwks_keys(self.path.read_bytes()), \
                    stamp, None
        except (OSError, ValueError) as exc:  # keep the last good keys
            self.problem = f"jwks_file {self.path} is unreadable or not a JWKS: {exc}"
            log.warning("%s", self.problem)
        return self._keys


class JwksUrlSource(KeySource):
    """A JWKS fetched over HTTP(S), cached ``refresh_s``; an unknown kid refetches at most
    every ``min_refresh_s``. A failed fetch keeps the keys fetched before."""

    def __init__(self, url: str, refresh_s: float, min_refresh_s: float,
                 timeout_s: float = 5.0) -> None:
        self.url, self.refresh_s, self.min_refresh_s = url, refresh_s, min_refresh_s
        self.timeout_s = timeout_s
        self.fetches = 0
        self._keys: list[VerificationKey] = []
        self._next_fetch = 0.0
        self._forced_at = float("-inf")
        self._lock = threading.Lock()
        # a loopback IdP is never reached through a proxy from the environment
        handlers = [urllib.request.ProxyHandler({})] if is_loopback(
            urlsplit(url).hostname or "") else []
        self._opener = urllib.request.build_opener(*handlers)

    def fetch_due(self, kid: str | None) -> bool:
        now = time.monotonic()
        if now >= self._next_fetch:
            return True
        return (kid is not None and all(k.kid != kid for k in self._keys)
                and now - self._forced_at >= self.min_refresh_s)

    def current(self) -> list[VerificationKey]:
        if time.monotonic() >= self._next_fetch:
            with self._lock:
                if time.monotonic() >= self._next_fetch:
                    self._fetch()
        return self._keys

    def refresh_for(self, kid: str) -> bool:
        with self._lock:
            if any(k.kid == kid for k in self._keys):
                return True  # another thread fetched it meanwhile
            now = time.monotonic()
            if now - self._forced_at < self.min_refresh_s:
                return False
            self._forced_at = now
            self._fetch()
            return True

    def _fetch(self) -> None:
        self.fetches += 1
        try:
            with self._opener.open(self.url, timeout=self.timeout_s) as response:
                document = response.read(MAX_JWKS_BYTES + 1)
            if len(document) > MAX_JWKS_BYTES:
                raise ValueError(f"larger than {MAX_JWKS_BYTES} bytes")
            keys = jwks_keys(document)
        except (OSError, ValueError) as exc:
            self._next_fetch = time.monotonic() + min(self.refresh_s, JWKS_RETRY_S)
            self.problem = f"fetching {self.url} failed: {exc}"
            log.warning("%s%s", self.problem,
                        "; keeping the keys fetched before" if self._keys else "")
            return
        self._keys, self.problem = keys, None
        self._next_fetch = time.monotonic() + self.refresh_s


class LocalKeySource(KeySource):
    """The box's own token key (``keys/tokens.ed25519.pem``), once it exists: it is
    created by ``appliance tokens issue``/``public-key``, never by validation."""

    def __init__(self, data_dir: Path) -> None:
        self._store = KeyStore(data_dir)
        self._keys: list[VerificationKey] = []
        self.problem = "no local token key yet: `appliance tokens issue` creates it"

    def current(self) -> list[VerificationKey]:
        if not self._keys and (self._store.dir / f"{LOCAL_KEY}.ed25519.pem").exists():
            public = self._store.signing_key(LOCAL_KEY).public_key()
            self._keys, self.problem = [VerificationKey(public, EDDSA, local_kid(public))], None
        return self._keys


def issuer_sources(issuer: IssuerSettings) -> list[KeySource]:
    """The key sources an issuer's settings name. PEM files, a shared secret and a JWKS
    file are read now, so a bad one fails the configuration; a JWKS URL is first fetched
    when a token needs its keys."""
    sources: list[KeySource] = []
    if issuer.pem_files:
        sources.append(StaticSource([k for p in issuer.pem_files for k in pem_keys(p)]))
    if issuer.shared_secret_file is not None:
        sources.append(StaticSource([secret_key(issuer.shared_secret_file)]))
    if issuer.jwks_file is not None:
        sources.append(JwksFileSource(issuer.jwks_file))
    if issuer.jwks_url is not None:
        sources.append(JwksUrlSource(issuer.jwks_url, issuer.jwks_refresh_s,
                                     issuer.jwks_min_refresh_s))
    return sources
