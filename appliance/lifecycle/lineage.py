"""Lineage of a model version: how it was made, from what, and where and when it served.

The chain starts at the training job recorded in the package manifest (``lineage``:
``training_job``, ``training_url``, ``code_commit``, ``dataset_digest``) and follows
``lineage.parents`` (``{model, version, relation}``: a distillation teacher, the fp32
source of a quantized variant, ...) recursively. Parents in this registry are expanded;
parents it does not hold are shown as external. The stage history of each version says
where it served, from when to when, and who moved it.
"""

from __future__ import annotations

from typing import Any

from ..errors import NotFound
from ..registry import Registry
from ..registry.events import stage_changes
from .stages import SERVING

TRAINING_KEYS = ("training_job", "training_url", "code_commit", "dataset_digest")
MAX_DEPTH = 32


def stage_history(registry: Registry, model: str, version: str) -> list[dict[str, Any]]:
    """Stage changes of one version, oldest first."""
    rows = sorted(stage_changes(registry.db, model, version), key=lambda r: (r["at"], r["id"]))
    keys = ("from_stage", "to_stage", "at", "actor", "reason")
    return [{k: r[k] for k in keys} for r in rows]


def served_periods(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Spans spent in a serving stage: ``{stage, since, until (None: still), by}``."""
    periods = []
    for i, row in enumerate(history):
        if row["to_stage"] in SERVING:
            until = history[i + 1]["at"] if i + 1 < len(history) else None
            periods.append({"stage": row["to_stage"], "since": row["at"], "until": until,
                            "by": row["actor"]})
    return periods


def _node(registry: Registry, model: str, version: str, relation: str | None,
          seen: frozenset[tuple[str, str]], depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"model": model, "version": version, "relation": relation}
    try:
        record = registry.version(model, version)
    except NotFound:
        return {**node, "external": True}
    manifest_lineage = record.manifest.get("lineage") or {}
    history = stage_history(registry, model, version)
    node.update({
        "external": False, "stage": record.stage, "digest": record.digest,
        "created_at": record.created_at, "created_by": record.created_by,
        "training": {k: manifest_lineage.get(k) for k in TRAINING_KEYS
                     if manifest_lineage.get(k) is not None},
        "history": history, "served": served_periods(history), "parents": [],
    })
    key = (model, version)
    for parent in manifest_lineage.get("parents") or []:
        p_model = str(parent.get("model") or model)
        p_version = str(parent.get("version") or "")
        p_relation = parent.get("relation")
        if (p_model, p_version) in seen | {key} or depth >= MAX_DEPTH:
            node["parents"].append({"model": p_model, "version": p_version,
                                    "relation": p_relation, "cycle": True})
            continue
        node["parents"].append(_node(registry, p_model, p_version, p_relation,
                                     seen | {key}, depth + 1))
    return node


def lineage(registry: Registry, model: str, version: str) -> dict[str, Any]:
    """The lineage tree of ``model`` ``version`` (NotFound when it is not registered)."""
    registry.version(model, version)
    return _node(registry, model, version, None, frozenset(), 0)


def _describe_training(training: dict[str, Any]) -> str:
    parts = []
    if training.get("training_job"):
        parts.append(f"job {training['training_job']}")
    if training.get("training_url"):
        parts.append(f"<{training['training_url']}>")
    if training.get("code_commit"):
        parts.append(f"commit {training['code_commit']}")
    if training.get("dataset_digest"):
        parts.append(f"dataset {training['dataset_digest']}")
    return "trained by " + ", ".join(parts) if parts else "training not recorded"


def _format(node: dict[str, Any], indent: str, lines: list[str]) -> None:
    label = f"{node['relation']}: " if node.get("relation") else ""
    head = f"{indent}{label}{node['model']} version {node['version']}"
    if node.get("cycle"):
        lines.append(f"{head} (already shown above)")
        return
    if node.get("external"):
        lines.append(f"{head} (external: not in this registry)")
        return
    lines.append(f"{head} ({node['stage']}, digest {node['digest'][:12]}, added "
                 f"{node['created_at']} by {node['created_by']})")
    lines.append(f"{indent}  {_describe_training(node['training'])}")
    for row in node["history"]:
        move = (f"{row['from_stage']} -> {row['to_stage']}" if row["from_stage"]
                else row["to_stage"])
        why = f": {row['reason']}" if row.get("reason") else ""
        lines.append(f"{indent}  {row['at']}  {move} by {row['actor']}{why}")
    if node["parents"]:
        lines.append(f"{indent}  parents:")
        for parent in node["parents"]:
            _format(parent, indent + "    ", lines)


def format_lineage(tree: dict[str, Any]) -> str:
    """The lineage tree as indented text for people."""
    lines: list[str] = []
    _format(tree, "", lines)
    return "\n".join(lines)
