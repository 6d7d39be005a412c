"""Bearer JWTs, validated offline with PyJWT against each trusted issuer's keys.

The algorithms a key verifies come from the key's type, never from the token's header
(RFC 8725 section 2.1), so neither ``alg: none`` nor an HS256 token "signed" with a public
RSA key as its HMAC secret is ever checked as such:

    RSA            RS256, PS256
    EC P-256       ES256
    EC P-384       ES384
    Ed25519        EdDSA
    shared secret  HS256   (only from an issuer's explicit ``shared_secret_file``)

Keys come from PEM files, a JWKS file (re-read when it changes) or a JWKS URL (fetched,
cached ``jwks_refresh_s``; a token naming an unknown ``kid`` refetches at most every
``jwks_min_refresh_s``). Tokens ``appliance tokens issue`` mints are trusted through the
box's own ``tokens`` key once it exists. A verified token is remembered (by its exact
text) for at most :data:`CACHE_S` seconds, so a client reusing its token pays for one
signature check, not one per request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ..errors import ConfigError, Unauthorized
from .auth_settings import AuthSettings, IssuerSettings, check_auth_settings, is_loopback
from .keys import KeyStore, check_private
from .scopes import Identity, scopes_from_claims

__all__ = ["CACHE_S", "Identity", "TokenValidator", "algorithms_for", "local_kid"]

log = logging.getLogger(__name__)

#: longest a verified token is trusted without checking its signature again; bounds how
#: long a key removed from an issuer's JWKS keeps working for tokens already seen
CACHE_S = 60.0
_CACHE_SIZE = 4096
#: larger "tokens" are refused before any parsing
MAX_TOKEN_BYTES = 16 * 1024
_CLAIMS_REQUIRED = ["exp", "iss"]

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


def _unverified(token: str) -> dict[str, Any]:
    """Header and claims before any check, in one parse (PyJWT's base64 parsing costs as
    much as an Ed25519 verification): only to pick the issuer and key."""
    return jwt.decode_complete(token, options={"verify_signature": False})


def _when(ts: Any) -> str:
    try:
        return datetime.fromtimestamp(float(ts), UTC).isoformat(timespec="seconds")
    except (TypeError, ValueError, OverflowError, OSError):
        return repr(ts)


class _Issuer:
    def __init__(self, name: str, audience: str | list[str], sources: list[KeySource]) -> None:
        self.name = name
        self.audience = [audience] if isinstance(audience, str) else list(audience)
        self.sources = sources

    def current(self) -> list[VerificationKey]:
        return [k for source in self.sources for k in source.current()]

    def refresh_for(self, kid: str) -> bool:
        """Refetch sources that may have learnt ``kid``; True when any did."""
        return any([source.refresh_for(kid) for source in self.sources])

    def fetch_due(self, kid: str | None) -> bool:
        return any(source.fetch_due(kid) for source in self.sources)

    def problems(self) -> str:
        found = [s.problem for s in self.sources if s.problem]
        return f" ({'; '.join(found)})" if found else ""


def _sources(issuer: IssuerSettings) -> list[KeySource]:
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


class TokenValidator:
    """``validate(token)`` returns the caller's :class:`Identity` or raises Unauthorized
    saying why the token is refused. Thread-safe; build one per configuration."""

    def __init__(self, config: AuthSettings, *, data_dir: Path | None = None) -> None:
        check_auth_settings(config)
        self.config = config
        self._issuers = {i.issuer: _Issuer(i.issuer, i.audience, _sources(i))
                         for i in config.issuers}
        if data_dir is not None:
            self._issuers[config.local_issuer] = _Issuer(
                config.local_issuer, config.local_audience, [LocalKeySource(data_dir)])
        # PyJWT warns about short keys; refuse them instead (pytest turns warnings to errors)
        self._jwt = jwt.PyJWT(options={"enforce_minimum_key_length": True})
        self._cache: dict[str, tuple[Identity, float]] = {}
        self._cache_lock = threading.Lock()

    @property
    def issuers(self) -> list[str]:
        return sorted(self._issuers)

    def cached(self, token: str) -> Identity | None:
        """The identity of a token verified in the last :data:`CACHE_S` seconds."""
        hit = self._cache.get(token)
        if hit is not None:
            if time.time() < hit[1]:
                return hit[0]
            self._cache.pop(token, None)
        return None

    def fetch_due(self, token: str) -> bool:
        """Whether validating ``token`` may fetch keys over the network (then an async
        caller runs :meth:`validate` in a worker thread, off the event loop)."""
        try:
            parts = _unverified(token)
            kid, iss = parts["header"].get("kid"), parts["payload"].get("iss")
        except jwt.PyJWTError:
            return False
        issuer = self._issuers.get(iss) if isinstance(iss, str) else None
        return issuer is not None and issuer.fetch_due(kid if isinstance(kid, str) else None)

    def validate(self, token: str) -> Identity:
        """Verify ``token``'s signature, issuer, audience, exp and nbf; Unauthorized if not."""
        identity = self.cached(token)
        if identity is not None:
            return identity
        if len(token) > MAX_TOKEN_BYTES:
            raise Unauthorized(f"token is longer than {MAX_TOKEN_BYTES} bytes")
        try:
            parts = _unverified(token)
            header, unverified = parts["header"], parts["payload"]
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"malformed token: {exc}") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none":
            raise Unauthorized("alg none is refused: the token must be signed")
        iss = unverified.get("iss")
        issuer = self._issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise Unauthorized(f"issuer {iss!r} is not trusted; trusted issuers: "
                               f"{', '.join(self.issuers) or 'none configured'}")
        kid = header.get("kid") if isinstance(header.get("kid"), str) else None
        claims = self._verify(token, alg, kid, issuer, unverified)
        identity = self._identity(claims)
        with self._cache_lock:  # validate also runs in worker threads (JWKS fetches)
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.pop(next(iter(self._cache)), None)  # the oldest entry
            self._cache[token] = (identity, min(float(claims["exp"]), time.time() + CACHE_S))
        return identity

    def _candidates(self, issuer: _Issuer, kid: str | None) -> list[VerificationKey]:
        keys = issuer.current()
        if kid is None:
            return keys
        named = [k for k in keys if k.kid == kid]
        if not named and issuer.refresh_for(kid):
            named = [k for k in issuer.current() if k.kid == kid]
        # keys without a kid (PEM files, the local key) may still sign a token that names one
        return named or [k for k in keys if k.kid is None]

    def _verify(self, token: str, alg: str, kid: str | None, issuer: _Issuer,
                unverified: dict[str, Any]) -> dict[str, Any]:
        candidates = self._candidates(issuer, kid)
        if not candidates:
            why = f"no key with kid {kid!r}" if kid else "no keys"
            raise Unauthorized(f"issuer {issuer.name}'s keys hold {why}{issuer.problems()}; "
                               "the token was not signed by a key this appliance trusts")
        usable = [k for k in candidates if alg in k.algorithms]
        if not usable:
            offered = sorted({a for k in candidates for a in k.algorithms})
            raise Unauthorized(f"alg {alg} is refused for issuer {issuer.name}: its keys "
                               f"verify only {', '.join(offered)}")
        for key in usable:
            try:
                return self._jwt.decode(
                    token, key.key, algorithms=[alg], audience=issuer.audience,
                    issuer=issuer.name, leeway=self.config.leeway_s,
                    options={"require": _CLAIMS_REQUIRED})
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError as exc:
                raise Unauthorized(self._reason(exc, issuer, unverified)) from None
        raise Unauthorized(f"signature does not verify with issuer {issuer.name}'s keys")

    def _reason(self, exc: jwt.PyJWTError, issuer: _Issuer, claims: dict[str, Any]) -> str:
        now = _when(time.time())
        if isinstance(exc, jwt.ExpiredSignatureError):
            return (f"token expired at {_when(claims.get('exp'))} (now {now}, leeway "
                    f"{self.config.leeway_s:g}s); get a new token")
        if isinstance(exc, jwt.ImmatureSignatureError):
            which = "nbf" if "nbf" in str(exc) or "iat" not in str(exc) else "iat"
            return (f"token not valid before {_when(claims.get(which))} ({which}; now "
                    f"{now}, leeway {self.config.leeway_s:g}s); check the clocks")
        if isinstance(exc, jwt.MissingRequiredClaimError):
            return f"token has no {exc.claim} claim; issuer {issuer.name}'s tokens need one"
        if isinstance(exc, jwt.InvalidAudienceError):
            return (f"wrong audience {claims.get('aud')!r}: tokens from {issuer.name} must "
                    f"be for {' or '.join(map(repr, issuer.audience))}")
        if isinstance(exc, jwt.InvalidKeyError):
            return f"issuer {issuer.name}'s key is refused: {exc}"
        return f"invalid token: {exc}"

    def _identity(self, claims: dict[str, Any]) -> Identity:
        subject = next((claims[c] for c in ("sub", "azp", "client_id")
                        if isinstance(claims.get(c), str) and claims[c]), None)
        if subject is None:
            raise Unauthorized("token names no subject (sub, azp or client_id claim)")
        scopes, roles = scopes_from_claims(claims, self.config.roles_claim,
                                           self.config.role_scopes)
        return Identity(subject, scopes, roles, "jwt")
