"""Who is calling: the checks of one ``[auth]`` configuration (Bearer JWTs and mTLS
client certificates), independent of HTTP frameworks. :class:`Authenticator` is built
once, by ``build_services``, so a bad ``[auth]`` setting fails at start-up; the HTTP
layer (``appliance/api/auth.py``) asks it for the identity of each request.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio.to_thread

from ..errors import Unauthorized
from .auth_settings import AuthSettings, auth_enabled, check_auth_settings
from .scopes import OPEN_IDENTITY, REALM, Identity, header_safe
from .tls import SubjectMap, client_cert_name
from .tokens import TokenValidator

__all__ = ["Authenticator"]


def _challenge(description: str | None) -> dict[str, str]:
    if description is None:
        return {"WWW-Authenticate": f'Bearer realm="{REALM}"'}
    return {"WWW-Authenticate": f'Bearer realm="{REALM}", error="invalid_token", '
                                f'error_description="{header_safe(description)}"'}


class Authenticator:
    """The checks for one configuration: built once (settings errors surface then)."""

    def __init__(self, auth: AuthSettings, host: str, data_dir: Path | None) -> None:
        check_auth_settings(auth)
        self.settings = auth
        self.enabled = auth_enabled(auth, host)
        self.validator = TokenValidator(auth, data_dir=data_dir)
        self.subjects = SubjectMap(auth.mtls_subjects)

    async def identify(self, authorization: str | None, scope: Mapping[str, Any], *,
                       always: bool = False) -> Identity:
        """The caller's identity, or Unauthorized with its challenge; ``always`` checks
        credentials even while auth is off (for the scopes in OPEN_DENIED)."""
        if not (self.enabled or always):
            return OPEN_IDENTITY
        if authorization is not None:
            scheme, _, token = authorization.strip().partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token:
                raise Unauthorized("the Authorization header must be \"Bearer <token>\"",
                                   headers=_challenge("expected a Bearer token"))
            identity = self.validator.cached(token)
            if identity is not None:
                return identity
            try:
                if self.validator.fetch_due(token):  # a JWKS fetch must not block the loop
                    return await anyio.to_thread.run_sync(self.validator.validate, token)
                return self.validator.validate(token)
            except Unauthorized as exc:
                raise Unauthorized(exc.message, headers=_challenge(exc.message)) from None
        subject = client_cert_name(scope)
        if subject is not None:
            identity = self.subjects.identity(subject)
            if identity is None:
                raise Unauthorized(f"client certificate {subject} is not in "
                                   "auth.mtls_subjects; add it there or send a Bearer token",
                                   headers=_challenge(None))
            return identity
        raise Unauthorized("authentication required: send \"Authorization: Bearer <token>\" "
                           "(`appliance tokens issue` mints one)", headers=_challenge(None))

