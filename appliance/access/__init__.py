"""Access control: who is calling and what they may do.

Tokens (``tokens.py`` validator, ``token_keys.py`` key sources: PEM, JWKS file or URL,
the box's own key), scopes and roles (``scopes.py``), TLS and mTLS (``tls.py``), the
``[auth]`` settings (``auth_settings.py``) and the per-request checks
(``authenticator.py``). The artifact supply chain (signing, encryption, scanning,
export) is the other half, in :mod:`appliance.security`.
"""
