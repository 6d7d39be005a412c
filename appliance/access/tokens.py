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
box's own ``tokens`` key once it exists. Those key sources live in :mod:`.token_keys`;
this module checks the token: its signature, claims and what it grants. A verified token
is remembered (by its exact text) for at most :data:`CACHE_S` seconds, so a client
reusing its token pays for one signature check, not one per request.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt

from ..errors import Unauthorized
from .auth_settings import AuthSettings, check_auth_settings
from .scopes import Identity, scopes_from_claims
from .token_keys import (
    KeySource,
    LocalKeySource,
    VerificationKey,
    algorithms_for,
    issuer_sources,
    local_kid,
)

__all__ = ["CACHE_S", "Identity", "TokenValidator", "algorithms_for", "local_kid"]

#: longest a verified token is trusted without checking its signature again; bounds how
#: long a key removed from an issuer's JWKS keeps working for tokens already seen
CACHE_S = 60.0
_CACHE_SIZE = 4096
#: larger "tokens" are refused before any parsing
MAX_TOKEN_BYTES = 16 * 1024
_CLAIMS_REQUIRED = ["exp", "iss"]


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


class TokenValidator:
    """``validate(token)`` returns the caller's :class:`Identity` or raises Unauthorized
    saying why the token is refused. Thread-safe; build one per configuration."""

    def __init__(self, config: AuthSettings, *, data_dir: Path | None = None) -> None:
        check_auth_settings(config)
        self.config = config
        self._issuers = {i.issuer: _Issuer(i.issuer, i.audience, issuer_sources(i))
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
