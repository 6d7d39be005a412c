"""Many simulated boxes against a real hub (its database, TUF repository and report
handling), in one process, on a controllable clock with seeded randomness.

Each box reads its desired state from the TUF repository's published files (as the
static host serves them), "installs" what it names — a box drawn to fail warm-up keeps
serving its old version and reports ``warmup_failed``, as the load-first switch does —
and sends signed reports through the hub's own :func:`receive_report` (signature
checked, stored exactly once). Boxes sync every ``sync_s`` seconds at a random phase
with ±10 % jitter; the controller ticks every ``tick_s``. A box whose state did not
change and that is in no rollout skips its report (it would say nothing new), which
keeps a thousand boxes over simulated hours to seconds of real time.

    sim = FleetSim(hub, "fleet", boxes=1000, seed=7, fail_share=0.1)
    sim.run(until=lambda: rollout_status(...) != "running", limit_s=4 * 3600)
"""

from __future__ import annotations

import base64
import heapq
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from appliance.audit.records import now_iso
from appliance.hub import rollout_controller
from appliance.hub import store as db
from appliance.hub.reports import receive_report
from appliance.hub.services import Hub
from appliance.hub.tuf_layout import RepoLayout, desired_path
from appliance.security.trust import key_id

MODEL = "scale"


def _pem(key: Any) -> str:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def enrol_many(hub: Hub, group: str, count: int, prefix: str = "sim") -> list[tuple[str, Any]]:
    """Enrol ``count`` boxes into ``group`` at once (the rows ``enroll`` writes, without
    a token each); (device id, signing key) per box. Desired states are published by the
    caller (an assignment or a rollout)."""
    out = []
    at = now_iso()
    with hub.store.write() as conn:
        for i in range(count):
            signing = Ed25519PrivateKey.generate()
            encryption = X25519PrivateKey.generate().public_key()
            device_id = f"{prefix}-{i:05d}"
            db.add_device(conn, id=device_id, group_name=group,
                          signing_key=_pem(signing.public_key()),
                          signing_key_id=key_id(signing.public_key()),
                          encryption_key=_pem(encryption), encryption_key_id=key_id(encryption),
                          enrolled_at=at, last_seen=at, hardware={})
            out.append((device_id, signing))
    return out


@dataclass
class SimBox:
    device_id: str
    signing: Ed25519PrivateKey
    fails_warmup: bool
    serving: dict[str, str] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)
    seen_versions: set[str] = field(default_factory=set)
    seq: int = 0
    last_said: Any = None

    def cycle(self, hub: Hub, desired: dict[str, Any]) -> dict[str, Any] | None:
        """Apply ``desired``; the report to send, or None when nothing changed."""
        outcomes = []
        for model, entry in sorted(desired.items()):
            version = str(entry["version"])
            self.seen_versions.add(version)
            tagged = isinstance(entry.get("rollout"), str)
            if version != self.serving.get(model) and version not in self.failed:
                if tagged and self.fails_warmup:
                    self.failed.add(version)  # warm-up failed: the old version serves on
                else:
                    self.serving[model] = version
            if tagged:
                state = ("failed" if version in self.failed else
                         "succeeded" if self.serving.get(model) == version else "pending")
                outcomes.append({"rollout": entry["rollout"], "model": model,
                                 "version": version, "state": state,
                                 "failure_type": "warmup_failed" if state == "failed" else None,
                                 "reason": "warm-up failed" if state == "failed" else ""})
        said = (dict(self.serving), outcomes)
        if said == self.last_said:
            return None
        self.last_said = said
        self.seq += 1
        return {"device_id": self.device_id, "seq": self.seq, "sent_at": now_iso(),
                "installed": {m: [{"version": v, "stage": "production"}]
                              for m, v in self.serving.items()},
                "health": {"status": "ok"}, "profile": "x86_64-avx2",
                "audit_checkpoints": [], "audit_records": [], "metrics": {},
                "rollouts": outcomes}

    def send(self, hub: Hub, report: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps(report).encode()
        signature = base64.b64encode(self.signing.sign(body)).decode()
        return receive_report(hub, body, self.device_id, signature)


class FleetSim:
    """Boxes, a clock and the controller; :meth:`run` plays events in time order."""

    def __init__(self, hub: Hub, group: str, *, boxes: int, seed: int, fail_share: float,
                 sync_s: float = 60.0, tick_s: float = 10.0) -> None:
        self.hub, self.sync_s, self.tick_s = hub, sync_s, tick_s
        self.rng = random.Random(seed)
        enrolled = enrol_many(hub, group, boxes)
        failing = set(self.rng.sample(range(boxes), round(boxes * fail_share)))
        self.boxes = [SimBox(d, k, i in failing) for i, (d, k) in enumerate(enrolled)]
        self.now = datetime.now(UTC)
        self._layout = RepoLayout(hub.directory / "repo")
        self._state: Any = None
        self.decisions: list[tuple[datetime, str, str]] = []
        self.on_report: Callable[[datetime], None] | None = None

    def fail_every(self, rollout_id: str, nth: int, offset: int = 0) -> None:
        """Make every ``nth`` box in the rollout's bucket order (from ``offset``) fail
        warm-up, and no other: each wave then holds a known share of failing boxes
        whatever random id the rollout drew."""
        order = sorted(self.boxes, key=lambda b: rollout_controller.bucket(rollout_id,
                                                                           b.device_id))
        for rank, box in enumerate(order):
            box.fails_warmup = rank % nth == offset

    def invalidate(self) -> None:
        """The repository changed (a command outside the controller published)."""
        self._state = None

    def desired_of(self, device_id: str) -> dict[str, Any]:
        if self._state is None:
            self._state = self._layout.read()
        info = self._state.find_target(desired_path(device_id))
        if info is None:
            return {}
        return dict(json.loads(self._layout.target_file(info).read_bytes()))

    def run(self, until: Callable[[], bool], limit_s: float) -> float:
        """Play until ``until()`` (checked after each controller tick) or ``limit_s`` of
        simulated time; the simulated seconds played."""
        start = self.now
        events: list[tuple[float, int, int]] = []
        for i in range(len(self.boxes)):
            heapq.heappush(events, (self.rng.uniform(0, self.sync_s), 1, i))
        heapq.heappush(events, (self.tick_s, 0, -1))
        while events:
            t, kind, index = heapq.heappop(events)
            if t > limit_s:
                break
            self.now = start + timedelta(seconds=t)
            if kind == 0:
                decided = rollout_controller.tick(self.hub, self.now)
                for rid, what in decided.items():
                    self.decisions.append((self.now, rid, what))
                if decided:
                    self.invalidate()
                if until():
                    return t
                heapq.heappush(events, (t + self.tick_s, 0, -1))
                continue
            box = self.boxes[index]
            report = box.cycle(self.hub, self.desired_of(box.device_id))
            if report is not None:
                box.send(self.hub, report)
                if self.on_report is not None:
                    self.on_report(self.now)
            jitter = self.rng.uniform(0.9, 1.1)
            heapq.heappush(events, (t + self.sync_s * jitter, 1, index))
        return (self.now - start).total_seconds()
