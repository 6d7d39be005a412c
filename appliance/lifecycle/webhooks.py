"""Consumer webhooks: which destinations are allowed, and the outbox that delivers to them.

**Destinations.** A webhook URL is http(s). Its host is resolved and every address it
resolves to must be global: loopback, private (RFC 1918, ULA), link-local (cloud
metadata at 169.254.169.254 included), shared (CGNAT), multicast, unspecified and
reserved addresses are refused unless ``lifecycle.webhooks.allow`` names the address or
a network holding it. The check runs at registration (400) and again at send time, on
the addresses the send then connects to: the request is pinned to the checked address
(``Host`` header and TLS server name kept), so a DNS answer that changes in between
cannot steer it elsewhere. Redirects are not followed and proxies from the environment
are not used.

**Outbox.** A deprecation writes one ``webhook_outbox`` row per consumer webhook in the
same transaction as its notice; nothing is sent from the request's (or the CLI's)
thread. The serving process drains the outbox from :class:`OutboxWorker` threads (one
per data directory, started by :func:`kick`: after an API deprecation, and every
``poll_s`` by the scheduler's :class:`OutboxPoller`): due
rows are leased (so two processes never send the same row at once), POSTed at most
``concurrency`` at a time with a ``timeout_s`` each, and either marked ``delivered`` or
retried after ``backoff_s`` doubling up to ``max_backoff_s``; after ``max_attempts``
failures, or at once for a refused destination, the row is ``failed`` with its reason.
Each outcome is copied onto the consumer's ``notices`` row.

SQL here: owns the ``webhook_outbox`` table and the delivery columns of ``notices``
(the outbox is drained by leases that must be one statement each).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import sqlite_utils

from ..errors import BadRequest
from ..registry.db import open_database, transaction
from .settings import IPNetwork, WebhookSettings

log = logging.getLogger("appliance.webhooks")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_LEASE_MARGIN_S = 30.0


# -- destinations -------------------------------------------------------------------------

def _kind(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public destination, or None when it is."""
    for attr, kind in (("is_loopback", "loopback"), ("is_link_local", "link-local"),
                       ("is_unspecified", "unspecified"), ("is_multicast", "multicast"),
                       ("is_private", "private"), ("is_reserved", "reserved")):
        if getattr(ip, attr):
            return kind
    return None if ip.is_global else "not globally routable"


class Unresolved(BadRequest):
    """The webhook's host does not resolve (now): refused at registration, retried when
    sending (DNS failures are often transient)."""


def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Unresolved(f"webhook host {host!r} does not resolve ({exc}); give a host name "
                         "that resolves, or an IP address") from None
    found: list[IPAddress] = []
    for info in infos:
        ip = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if ip not in found:
            found.append(ip)
    return found


def _refusal(ip: IPAddress, allowed: list[IPNetwork]) -> str | None:
    plain = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else ip
    if any(plain in net for net in allowed):
        return None
    return _kind(plain)


def check_destination(url: str, settings: WebhookSettings) -> list[IPAddress]:
    """The addresses ``url``'s host resolves to, all allowed; BadRequest naming the one
    that is not (and how to allow it)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest(f"webhook {url!r} is not an http(s) URL, e.g. "
                         "https://hooks.example.com/appliance")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise BadRequest(f"webhook {url!r} has an invalid port") from None
    ips = _resolve(parts.hostname, port)
    allowed = settings.networks()
    for ip in ips:
        kind = _refusal(ip, allowed)
        if kind is not None:
            shown = "" if str(ip) == parts.hostname else f" resolves to {ip}, which"
            raise BadRequest(
                f"webhook {url!r} refused: {parts.hostname}{shown} is a {kind} address; "
                "webhooks may only reach public addresses unless lifecycle.webhooks.allow "
                f"in the configuration names it (e.g. allow = [\"{ip}\"])")
    return ips


def post_pinned(url: str, payload: dict[str, Any],
                settings: WebhookSettings) -> tuple[bool, str, bool]:
    """POST ``payload`` to ``url`` after checking its destination: (delivered, what
    happened, whether retrying is pointless). Never raises."""
    try:
        ips = check_destination(url, settings)
    except BadRequest as exc:
        return False, exc.message, not isinstance(exc, Unresolved)
    import httpx

    parts = urlsplit(url)
    ip = ips[0]
    host = f"[{ip}]" if ip.version == 6 else str(ip)
    netloc = f"{host}:{parts.port}" if parts.port else host
    pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    hostport = parts.netloc.rpartition("@")[2]
    extensions = {"sni_hostname": parts.hostname} if parts.scheme == "https" else {}
    try:
        with httpx.Client(trust_env=False, follow_redirects=False,
                          timeout=settings.timeout_s) as client:
            response = client.post(pinned, json=payload, headers={"Host": hostport},
                                   extensions=extensions)
    except Exception as exc:  # recorded on the outbox row, retried later
        return False, f"{type(exc).__name__}: {exc or 'no answer'}", False
    if 200 <= response.status_code < 300:
        return True, f"HTTP {response.status_code}", False
    return False, f"HTTP {response.status_code} (expected 2xx)", False


# -- the outbox ---------------------------------------------------------------------------

def enqueue(db: sqlite_utils.Database, *, notice_id: int, consumer: str, model: str,
            url: str, payload: dict[str, Any], at: str) -> int:
    """Queue one delivery (call inside the caller's write transaction); its row id."""
    cur = db.execute("INSERT INTO webhook_outbox (notice_id, consumer, model, url, payload, "
                     "created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                     [notice_id, consumer, model, url, json.dumps(payload, sort_keys=True),
                      at, at])
    return int(cur.lastrowid or 0)


def outbox(db: sqlite_utils.Database, status: str | None = None) -> list[dict[str, Any]]:
    """Outbox rows (all, or of one status), oldest first, without their payloads."""
    where, args = ("WHERE status = ?", [status]) if status else ("", [])
    cur = db.execute("SELECT id, notice_id, consumer, model, url, status, attempts, "
                     "created_at, next_attempt_at, last_error, delivered_at, gave_up_at "
                     f"FROM webhook_outbox {where} ORDER BY id", args)
    cols = [c[0] for c in cur.description]
    return [dict(zip(cols, row)) for row in cur.fetchall()]


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _claim(db: sqlite_utils.Database, limit: int, lease_s: float) -> list[tuple[Any, ...]]:
    at = datetime.now(UTC)
    with transaction(db):
        rows = db.execute("SELECT id, notice_id, url, payload, attempts FROM webhook_outbox "
                          "WHERE status = 'pending' AND next_attempt_at <= ? AND "
                          "(lease_until IS NULL OR lease_until < ?) "
                          "ORDER BY next_attempt_at, id LIMIT ?",
                          [_iso(at), _iso(at), limit]).fetchall()
        for row in rows:
            db.execute("UPDATE webhook_outbox SET lease_until = ? WHERE id = ?",
                       [_iso(at + timedelta(seconds=lease_s)), row[0]])
    return rows


def _notice_detail(db: sqlite_utils.Database, notice_id: int, update: dict[str, Any],
                   delivered: bool) -> None:
    row = db.execute("SELECT detail FROM notices WHERE id = ?", [notice_id]).fetchone()
    if row is None:
        return
    detail = {k: v for k, v in json.loads(row[0] or "{}").items() if k != "pending"}
    db.execute("UPDATE notices SET delivered = ?, detail = ? WHERE id = ?",
               [int(delivered), json.dumps({**detail, **update}), notice_id])


def _finish(db: sqlite_utils.Database, row: tuple[Any, ...], result: tuple[bool, str, bool],
            settings: WebhookSettings) -> None:
    outbox_id, notice_id, url, _, attempts = row
    delivered, outcome, permanent = result
    attempts += 1
    at = datetime.now(UTC)
    with transaction(db):
        if delivered:
            db.execute("UPDATE webhook_outbox SET status = 'delivered', attempts = ?, "
                       "delivered_at = ?, lease_until = NULL, last_error = NULL WHERE id = ?",
                       [attempts, _iso(at), outbox_id])
            _notice_detail(db, notice_id, {"result": outcome, "attempts": attempts}, True)
        elif permanent or attempts >= settings.max_attempts:
            why = (f"gave up after {attempts} attempt(s): {outcome}" if not permanent
                   else f"not sent: {outcome}")
            db.execute("UPDATE webhook_outbox SET status = 'failed', attempts = ?, "
                       "gave_up_at = ?, lease_until = NULL, last_error = ? WHERE id = ?",
                       [attempts, _iso(at), why, outbox_id])
            _notice_detail(db, notice_id, {"error": why, "attempts": attempts}, False)
            log.warning("webhook %s (outbox #%d) %s", url, outbox_id, why)
        else:
            delay = min(settings.backoff_s * 2 ** (attempts - 1), settings.max_backoff_s)
            retry = _iso(at + timedelta(seconds=delay))
            db.execute("UPDATE webhook_outbox SET attempts = ?, next_attempt_at = ?, "
                       "lease_until = NULL, last_error = ? WHERE id = ?",
                       [attempts, retry, outcome, outbox_id])
            _notice_detail(db, notice_id, {"error": outcome, "attempts": attempts,
                                           "next_attempt_at": retry}, False)


def deliver_due(data_dir: Path, settings: WebhookSettings) -> int:
    """Send every delivery that is due now; the number attempted."""
    db = open_database(Path(data_dir) / "registry.db")
    try:
        lease_s = settings.timeout_s * 2 + _LEASE_MARGIN_S
        done = 0
        while rows := _claim(db, settings.concurrency * 4, lease_s):
            with ThreadPoolExecutor(max_workers=min(settings.concurrency, len(rows)),
                                    thread_name_prefix="webhook") as pool:
                results = list(pool.map(
                    lambda r: post_pinned(r[2], json.loads(r[3]), settings), rows))
            for row, result in zip(rows, results):
                _finish(db, row, result, settings)
            done += len(rows)
        return done
    finally:
        db.conn.close()


def seconds_until_next(data_dir: Path) -> float | None:
    """Seconds until the next pending delivery is due (a little when overdue); None when
    nothing is pending."""
    db = open_database(Path(data_dir) / "registry.db")
    try:
        # a row another process has leased is due again when its lease runs out
        row = db.execute("SELECT min(max(next_attempt_at, coalesce(lease_until, "
                         "next_attempt_at))) FROM webhook_outbox "
                         "WHERE status = 'pending'").fetchone()
    finally:
        db.conn.close()
    if not row or row[0] is None:
        return None
    wait = (datetime.fromisoformat(row[0]) - datetime.now(UTC)).total_seconds()
    return max(wait, 0.05)


# -- the delivery thread ------------------------------------------------------------------

class OutboxWorker(threading.Thread):
    """Drains one data directory's outbox until nothing is pending, then ends."""

    def __init__(self, data_dir: Path, settings: WebhookSettings) -> None:
        super().__init__(name=f"webhook-outbox:{data_dir.name}", daemon=True)
        self.data_dir = data_dir
        self.settings = settings
        self.wake = threading.Event()

    def run(self) -> None:
        while True:
            self.wake.clear()
            wait: float | None = None
            try:
                if not (self.data_dir / "registry.db").exists():
                    wait = None  # the data directory went away: nothing to deliver
                else:
                    deliver_due(self.data_dir, self.settings)
                    wait = seconds_until_next(self.data_dir)
            except Exception:  # never let one bad row stop deliveries for good
                log.exception("webhook outbox of %s: delivery round failed", self.data_dir)
                wait = self.settings.poll_s
            with _LOCK:
                if wait is None and not self.wake.is_set():
                    _WORKERS.pop(self.data_dir, None)
                    return
            self.wake.wait(min(wait if wait is not None else 0.0, self.settings.poll_s))


_LOCK = threading.Lock()
_WORKERS: dict[Path, OutboxWorker] = {}
#: the settings last given for a data directory (the server's, from its API routes)
_SETTINGS: dict[Path, WebhookSettings] = {}


def kick(data_dir: Path, settings: WebhookSettings | None = None) -> None:
    """Make sure this process is draining ``data_dir``'s outbox (starts a worker thread
    when none runs, else wakes it). Without ``settings``: those last given for this data
    directory, else the configuration's. Returns at once; never raises."""
    key = Path(data_dir).resolve()
    try:
        with _LOCK:
            if settings is not None:
                _SETTINGS[key] = settings
            settings = settings or _SETTINGS.get(key)
            if _wake(key, settings):
                return
        if settings is None:  # read outside the lock: it reads the configuration file
            from ..settings import load_settings

            settings = load_settings({"data_dir": key}).lifecycle.webhooks
        with _LOCK:
            if not _wake(key, settings):
                _WORKERS[key] = OutboxWorker(key, settings)
                _WORKERS[key].start()
    except Exception:
        log.exception("could not start the webhook outbox worker for %s", key)


def _wake(key: Path, settings: WebhookSettings | None) -> bool:
    """Wake ``key``'s running worker (call under _LOCK); False when none runs."""
    worker = _WORKERS.get(key)
    if worker is None or not worker.is_alive():
        return False
    worker.settings = settings or worker.settings
    worker.wake.set()
    return True


def remember(data_dir: Path, settings: WebhookSettings) -> None:
    """Record the serving process's settings for ``data_dir`` (its admin routes call this),
    so the poller's kicks use them rather than re-reading the configuration."""
    with _LOCK:
        _SETTINGS[Path(data_dir).resolve()] = settings


class OutboxPoller(threading.Thread):
    """Kicks the outbox of ``data_dir`` every ``every_s`` seconds until stopped (the
    serving process's scheduler runs one: deliveries queued by the CLI go out too)."""

    def __init__(self, data_dir: Path, every_s: float,
                 settings: WebhookSettings | None = None) -> None:
        super().__init__(name="webhook-outbox-poll", daemon=True)
        self.data_dir, self.every_s, self.settings = Path(data_dir), every_s, settings
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            if (self.data_dir / "registry.db").exists():
                kick(self.data_dir, self.settings)
            self._stop_event.wait(self.every_s)

    def stop(self) -> None:
        self._stop_event.set()
