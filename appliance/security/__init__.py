"""The artifact supply chain: keys, package signing and trust, encryption at rest and
key wrapping, the import scan, SBOMs, weight fingerprints and export. Access control
(tokens, scopes, TLS) is the other half, in :mod:`appliance.access`.
"""
