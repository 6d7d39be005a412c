"""Feedback on answered requests: ground-truth labels and rewards, joined by request id.

``POST /v1/feedback`` names the Open Inference Protocol request ``id`` and a ``label``
(the true class; a list, one per row, for a request of several rows) and/or a
``reward`` (a finite number; the routing issue's bandit reads them back with
:meth:`~.store.DriftStore.feedback`). The id is looked up in the monitor's recent-request
map (:mod:`.recent`): unknown or expired is a 404 saying which. A label is compared with
what the model predicted then, and the share of rows it got right is stored, so the
windows that request fell in report realised accuracy beside the estimate.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import BadRequest
from .monitor import DriftMonitor

Label = int | float | str | bool


def _same(label: Any, predicted: Any) -> bool:
    numbers = (int, float)
    if (isinstance(label, numbers) and isinstance(predicted, numbers)
            and not isinstance(label, bool)):
        return float(label) == float(predicted)
    return str(label) == str(predicted)


def _correct(label: Label | list[Label], predicted: list[Any]) -> float | None:
    if not predicted:
        return None
    labels = label if isinstance(label, list) else [label]
    if len(labels) != len(predicted):
        raise BadRequest(f"label: the request had {len(predicted)} row(s); send "
                         f"{'one label' if len(predicted) == 1 else 'a list of that many labels'}"
                         f", got {len(labels)}")
    return sum(_same(a, b) for a, b in zip(labels, predicted, strict=True)) / len(labels)


def record_feedback(monitor: DriftMonitor, request_id: str, *,
                    label: Label | list[Label] | None = None,
                    reward: float | None = None) -> dict[str, Any]:
    """Store a label and/or reward for an answered request; NotFound for an unknown or
    expired id, BadRequest for a body that says neither or a non-finite reward."""
    if label is None and reward is None:
        raise BadRequest("send a `label` (the true class) or a `reward` (a number), or both")
    if reward is not None and (isinstance(reward, bool) or not math.isfinite(reward)):
        raise BadRequest(f"reward must be a finite number, got {reward!r}")
    answered = monitor.recent.lookup(request_id)
    correct = _correct(label, answered.predicted) if label is not None else None
    row = {"request_id": request_id, "model": answered.model, "version": answered.version,
           "predicted": answered.predicted, "label": label, "reward": reward,
           "correct": correct, "rows": max(len(answered.predicted), 1),
           "requested_at": answered.at, "received_at": monitor.clock()}
    row["id"] = monitor.store.add_feedback(row)
    return row
