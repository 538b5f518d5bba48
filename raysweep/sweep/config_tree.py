"""Dotted-key edits of plain config trees, importable without the spec schema (which imports the task code and torch).

The Tune driver sets a trial's sampled keys with this; importing `raysweep.spec.load` there would load torch into a
process that never trains (`raysweep.spec.schema` → `raysweep.tasks.base`).
"""

from __future__ import annotations

from typing import Any


def set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """`tree["a"]["b"] = value` for "a.b", creating (or replacing non-dict) intermediate nodes."""
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value
