"""`appliance tokens ...`: mint local tokens, print the key that verifies them.

Local tokens are EdDSA JWTs signed with the box's ``tokens`` key
(``<data_dir>/keys/tokens.ed25519.pem``), issuer ``auth.local_issuer``; the appliance
trusts that key without configuration, so these are for development, scripts and
bootstrapping. Production callers should get tokens from the organisation's issuer.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import click

from ..errors import BadRequest
from . import data_dir_option, handle_errors, json_option, main, settings_from

_TTL = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
#: a local token that outlives this is a credential nobody remembers handing out
MAX_TTL_S = 90 * 86400


def parse_ttl(text: str) -> int:
    """Seconds in ``30s``, ``15m``, ``1h``, ``7d`` or a bare number of seconds."""
    match = _TTL.match(text)
    seconds = int(match.group(1)) * _UNIT_S[match.group(2)] if match else 0
    if not 0 < seconds <= MAX_TTL_S:
        raise BadRequest(f"--ttl {text!r}: give a duration like 30m, 1h or 7d, at most "
                         f"{MAX_TTL_S // 86400}d")
    return seconds


def mint_token(data_dir: Path, *, issuer: str, audience: str, subject: str,
               scopes: list[str], roles: list[str], ttl_s: int) -> tuple[str, dict[str, Any]]:
    """A signed local token and its claims (the key is created on first use)."""
    import jwt

    from ..access.scopes import check_scopes
    from ..access.tokens import local_kid
    from ..security.keys import KeyStore

    check_scopes(scopes, "--scope")
    key = KeyStore(data_dir).signing_key("tokens")
    now = int(time.time())
    claims: dict[str, Any] = {"iss": issuer, "aud": audience, "sub": subject, "iat": now,
                              "nbf": now, "exp": now + ttl_s, "jti": uuid.uuid4().hex}
    if scopes:
        claims["scope"] = " ".join(scopes)
    if roles:
        claims["roles"] = roles
    token = jwt.encode(claims, key, algorithm="EdDSA",
                       headers={"kid": local_kid(key.public_key())})
    return token, claims


@main.group()
def tokens() -> None:
    """Mint local access tokens and show the key that verifies them."""


def _auth(ctx: click.Context, data_dir: Path | None) -> tuple[Path, Any]:
    from ..access.auth_settings import AuthSettings

    settings = settings_from(ctx, data_dir=data_dir)
    return settings.data_dir, getattr(settings, "auth", None) or AuthSettings()


@tokens.command("issue")
@click.option("--sub", "subject", required=True, help="Who the token is for.")
@click.option("--scope", "scopes", multiple=True,
              help="A scope to grant (repeatable): models:infer, models:infer:<model>, "
                   "models:read, models:write, models:promote, models:approve, "
                   "models:export, audit:read, admin.")
@click.option("--role", "roles", multiple=True,
              help="A role (repeatable), mapped to scopes by auth.role_scopes.")
@click.option("--ttl", default="1h", show_default=True, help="Lifetime: 30m, 1h, 7d.")
@click.option("--aud", "audience", default=None,
              help="Audience (default: auth.local_audience, which this appliance accepts).")
@data_dir_option
@json_option
@click.pass_context
@handle_errors
def tokens_issue(ctx: click.Context, subject: str, scopes: tuple[str, ...],
                 roles: tuple[str, ...], ttl: str, audience: str | None,
                 data_dir: Path | None, as_json: bool) -> None:
    """Mint a token signed by this box's key; prints the token."""
    if not scopes and not roles:
        raise BadRequest("give at least one --scope or --role; a token without either "
                         "can do nothing but read server metadata")
    data, auth = _auth(ctx, data_dir)
    token, claims = mint_token(data, issuer=auth.local_issuer,
                               audience=audience or auth.local_audience, subject=subject,
                               scopes=list(scopes), roles=list(roles), ttl_s=parse_ttl(ttl))
    click.echo(json.dumps({"token": token, **claims}) if as_json else token)


@tokens.command("public-key")
@data_dir_option
@click.pass_context
@handle_errors
def tokens_public_key(ctx: click.Context, data_dir: Path | None) -> None:
    """Print the PEM public key that verifies local tokens (give it to other services
    that should trust them: a pem_files entry of their issuer configuration)."""
    from cryptography.hazmat.primitives import serialization

    from ..security.keys import KeyStore

    data, _ = _auth(ctx, data_dir)
    public = KeyStore(data).signing_key("tokens").public_key()
    click.echo(public.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
               nl=False)
