"""Scopes: what an identity may do, and the checks the API makes.

    models:infer             infer on every model
    models:infer:<name>      infer on model <name> only
    models:read              list and inspect models, versions, hardware
    models:write             consumers, legal holds, deprecation, deletion
    models:promote           promote and roll back
    models:approve           approve a version for production
    models:export            export a model's artifact (refused while auth is off)
    audit:read               read the audit log
    metrics:read             scrape /metrics and read /v1/health (a monitoring system)
    routes:write             change a model's route (weights, canary, shadow, bandit)
    hub:read                 the hub: list devices, groups, packages; verify its audit log
    hub:operate              the hub: groups, assignments, enrolment tokens, key rotation
    hub:publish              the hub: publish a signed package (a CI publisher)
    admin                    every scope above
    traffic:test             marks the holder's inference requests as test traffic; only
                             by name (admin does not imply it, and the open identity
                             lacks it)

An identity's scopes come from its token's own ``scope`` (space-separated, OAuth 2) or
``scp`` (list or string, Azure AD) claim, plus ``role_scopes[role]`` for each role in the
configured roles claim; an mTLS identity's come from ``mtls_subjects``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import ConfigError, Forbidden

INFER = "models:infer"
READ = "models:read"
WRITE = "models:write"
PROMOTE = "models:promote"
APPROVE = "models:approve"
EXPORT = "models:export"
AUDIT_READ = "audit:read"
METRICS_READ = "metrics:read"
ROUTES_WRITE = "routes:write"
TRAFFIC_TEST = "traffic:test"
HUB_READ = "hub:read"
HUB_OPERATE = "hub:operate"
HUB_PUBLISH = "hub:publish"
ADMIN = "admin"

#: the realm named in WWW-Authenticate challenges
REALM = "appliance"

#: the hub's operator API (appliance/hub/); a box's open identity never holds them
HUB_SCOPES = frozenset({HUB_READ, HUB_OPERATE, HUB_PUBLISH})
ALL_SCOPES = frozenset({INFER, READ, WRITE, PROMOTE, APPROVE, EXPORT, AUDIT_READ, METRICS_READ,
                        ROUTES_WRITE, TRAFFIC_TEST, ADMIN, *HUB_SCOPES})
#: refused to the open identity even though it holds ``admin``: without auth, an export
#: would hand the model's weights to anyone who can reach the port
OPEN_DENIED = frozenset({EXPORT})
_INFER_ONE = INFER + ":"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is calling: ``via`` says how they proved it ("jwt", "mtls" or "open")."""

    subject: str
    scopes: frozenset[str]
    roles: tuple[str, ...] = ()
    via: Literal["jwt", "mtls", "open"] = "jwt"


#: the identity every request gets while auth is off (see ``auth_enabled``)
OPEN_IDENTITY = Identity("anonymous", ALL_SCOPES - OPEN_DENIED - {TRAFFIC_TEST} - HUB_SCOPES,
                         (), "open")


def header_safe(text: str) -> str:
    """``text`` fit for a quoted header parameter: printable ASCII without ``"`` or ``\\``
    (a model name comes from the URL, and a CR/LF in it must not start a new header)."""
    return "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in text)


def is_scope(name: str) -> bool:
    """A known scope, or ``models:infer:<model>`` with a non-empty model name."""
    return name in ALL_SCOPES or (name.startswith(_INFER_ONE) and len(name) > len(_INFER_ONE))


def check_scopes(names: Iterable[str], where: str) -> None:
    """ConfigError naming the first unknown scope, so a typo in the configuration does not
    silently grant nothing (or, worse, look like it grants something)."""
    for name in names:
        if not is_scope(name):
            raise ConfigError(f"{where}: unknown scope {name!r}; known scopes: "
                              f"{', '.join(sorted(ALL_SCOPES))}, models:infer:<model>")


def has_scope(identity: Identity, scope: str) -> bool:
    """Whether ``identity`` holds ``scope``, directly or through ``admin``."""
    if identity.via == "open" and scope in OPEN_DENIED:
        return False
    if scope in identity.scopes or ADMIN in identity.scopes:
        return True
    # models:infer covers every models:infer:<name>
    return scope.startswith(_INFER_ONE) and INFER in identity.scopes


def require(identity: Identity, scope: str) -> None:
    """Forbidden (403) naming the missing scope unless ``identity`` holds it."""
    if has_scope(identity, scope):
        return
    if identity.via == "open":
        raise Forbidden(f"{scope} needs credentials even while auth is off: call with a token "
                        f"that has the {scope} scope (`appliance tokens issue --scope {scope}`)")
    # RFC 6750 section 3.1: a Bearer client learns which scope to ask for
    challenge = (f'Bearer realm="{REALM}", error="insufficient_scope", '
                 f'scope="{header_safe(scope)}"')
    raise Forbidden(f"{identity.subject} lacks the {scope} scope; ask for a token that has "
                    f"it (or admin)", headers={"WWW-Authenticate": challenge})


def can_infer(identity: Identity, model: str) -> bool:
    """``models:infer``, ``models:infer:<model>`` or ``admin``."""
    return has_scope(identity, _INFER_ONE + model)


def require_infer(identity: Identity, model: str) -> None:
    """Forbidden naming ``models:infer:<model>`` unless ``identity`` may infer on it."""
    require(identity, _INFER_ONE + model)


def _claim(claims: Mapping[str, Any], path: str) -> Any:
    """A claim by name, or by a dotted path into nested objects (Keycloak puts roles in
    ``realm_access.roles``) when no top-level claim has the dotted name."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _strings(value: Any) -> list[str]:
    """A claim that is a space-separated string or a list of strings, as a list."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list | tuple):
        return [v for v in value if isinstance(v, str)]
    return []


def scopes_from_claims(claims: Mapping[str, Any], roles_claim: str,
                       role_scopes: Mapping[str, Iterable[str]]
                       ) -> tuple[frozenset[str], tuple[str, ...]]:
    """The scopes and roles a verified token grants: its ``scope``/``scp`` claims plus
    the configured scopes of each role in ``roles_claim``; unmapped roles grant nothing."""
    scopes = set(_strings(claims.get("scope"))) | set(_strings(claims.get("scp")))
    roles = tuple(_strings(_claim(claims, roles_claim)))
    for role in roles:
        scopes.update(role_scopes.get(role, ()))
    return frozenset(s for s in scopes if is_scope(s)), roles
