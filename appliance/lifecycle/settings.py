"""Lifecycle settings, ``[lifecycle]`` in the TOML file (``Settings.lifecycle``).

    [lifecycle.webhooks]
    allow = ["10.20.0.0/16", "127.0.0.1"]   # private or loopback destinations allowed
    timeout_s = 5.0
    max_attempts = 8

    [lifecycle.packages]
    max_extract_bytes = 68719476736          # 64 GiB
    free_reserve_bytes = 536870912           # keep 512 MiB free on the data disk

Kept free of registry imports: :mod:`appliance.settings` imports this module.
"""

from __future__ import annotations

import ipaddress

import msgspec

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class WebhookSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Where consumer webhooks may point, and how the outbox retries deliveries."""

    #: IP addresses or CIDR networks that may be webhook destinations although they are
    #: loopback, private, link-local or otherwise not global (refused by default)
    allow: list[str] = msgspec.field(default_factory=list)
    #: seconds one POST may take (connect + answer) before it counts as failed
    timeout_s: float = 5.0
    #: deliveries that failed this many times are given up (the reason is recorded)
    max_attempts: int = 8
    #: delay before the first retry; doubled after each failure, up to max_backoff_s
    backoff_s: float = 10.0
    max_backoff_s: float = 3600.0
    #: deliveries sent at the same time (one slow endpoint does not hold up the others)
    concurrency: int = 4
    #: seconds between the serving process's checks for deliveries queued elsewhere (CLI)
    poll_s: float = 15.0

    def __post_init__(self) -> None:
        self.networks()  # a bad entry is a settings error, named, at load time
        if self.max_attempts < 1 or self.concurrency < 1:
            raise ValueError("lifecycle.webhooks: max_attempts and concurrency must be >= 1")
        if self.timeout_s <= 0 or self.backoff_s < 0 or self.poll_s <= 0:
            raise ValueError("lifecycle.webhooks: timeout_s and poll_s must be > 0, "
                             "backoff_s >= 0")

    def networks(self) -> list[IPNetwork]:
        """``allow`` parsed; ValueError naming an entry that is not an address or network."""
        out = []
        for entry in self.allow:
            try:
                out.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                raise ValueError(f"lifecycle.webhooks.allow: {entry!r} is not an IP address "
                                 "or CIDR network (write e.g. 127.0.0.1 or 10.0.0.0/8; "
                                 "host names are not accepted: DNS can change)") from None
        return out


class PackageLimits(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Bounds on what ``models push`` extracts."""

    #: total bytes of the files one package may hold
    max_extract_bytes: int = 64 << 30
    #: a push is refused (507) when it would leave less than this free on the data disk
    free_reserve_bytes: int = 512 << 20


class LifecycleSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``[lifecycle]``: consumer webhooks and package limits."""

    webhooks: WebhookSettings = msgspec.field(default_factory=WebhookSettings)
    packages: PackageLimits = msgspec.field(default_factory=PackageLimits)
